"""``casbackup daemon``: run the configured jobs on their schedules until SIGTERM.

Logs one line per event on stderr: ``TIME EVENT key=value …``, or with ``--json`` a JSON
object ``{"ts", "event", "job", "store", …}`` per line. Events: ``daemon-start``,
``job-scheduled``, ``job-start``, ``job-success``, ``job-partial``, ``job-warning``,
``job-retry``, ``job-failure``, ``job-stopped``, ``watch-start``, ``watch-ready``,
``watch-snapshot``, ``watch-sync``, ``watch-warning``, ``watch-error``, ``config-reload``,
``config-invalid``, ``metrics-listen``, ``metrics-error``, ``state-invalid``,
``state-error``, ``daemon-stopping``, ``daemon-stop``. Invariant: lines are written whole
(one lock, one write, flushed), whichever thread emits them.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from .common import JsonOpt


class EventLog:
    def __init__(self, json_lines: bool) -> None:
        self.json = json_lines
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        if self.json:
            record = {"ts": ts, "event": event, "job": fields.pop("job", None),
                      "store": fields.pop("store", None), **fields}  # fmt: skip
            line = json.dumps(record, default=str)
        else:
            parts = [ts, event] + [f"{k}={_text(v)}" for k, v in fields.items() if v is not None]
            line = " ".join(parts)
        with self._lock:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def _text(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v) or "-"
    s = str(v)
    return json.dumps(s) if not s or any(c.isspace() or c in "\"=" for c in s) else s


def daemon_cmd(
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="casbackup.yaml (default: $CASBACKUP_CONFIG, "
                     "else ~/.config/casbackup/casbackup.yaml)."),
    ] = None,
    stop_timeout: Annotated[
        float, typer.Option("--stop-timeout", help="On SIGTERM, let running jobs finish for "
                            "this many seconds, then stop them cleanly.")
    ] = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """Run the jobs of the configuration on their cron schedules, the watches, and the
    /metrics and /healthz endpoint. SIGHUP reloads the configuration; SIGTERM stops."""
    from ..daemon.config import find_config_path
    from ..daemon.runner import Daemon

    log = EventLog(json_out)
    daemon = Daemon(find_config_path(config), log, stop_timeout=stop_timeout)
    daemon.run()


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon_cmd)
