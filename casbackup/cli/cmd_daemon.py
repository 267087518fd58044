"""``casbackup daemon``: run the configured jobs on their schedules until SIGTERM.

Logs one line per event on stderr: ``TIME EVENT key=value …``, or with ``--json`` a JSON
object ``{"message_type": "event", "ts", "event", "job", "store", …}`` per line. Events:
``daemon-start``,
``job-scheduled``, ``job-start``, ``job-success``, ``job-partial``, ``job-warning``,
``job-retry``, ``job-failure``, ``job-stopped``, ``watch-start``, ``watch-ready``,
``watch-snapshot``, ``watch-sync``, ``watch-warning``, ``watch-error``, ``config-reload``,
``config-invalid``, ``metrics-listen``, ``metrics-error``, ``state-invalid``,
``state-error``, ``daemon-stopping``, ``daemon-stop``. Invariants: lines are written whole
(one lock, one write, flushed), whichever thread emits them; a text line's value that is
not printable (a hostile path, tag or host) is JSON-quoted, never raw.

Every line has a level (``level`` in JSON, the second word in text): ``error`` for failures
and invalid configuration or state, ``warning`` for warnings, retries, partial and stopped
runs, ``info`` otherwise. When stderr is the journal (``$JOURNAL_STREAM`` names it), each
line starts with the syslog priority (``<3>``, ``<4>``, ``<6>``) so ``journalctl -p err``
finds the failures.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from .common import JsonOpt

_PRIORITY = {"error": 3, "warning": 4, "info": 6}
_ERROR_EVENTS = {"config-invalid", "state-invalid"}
_WARNING_EVENTS = {"job-retry", "job-partial", "job-stopped"}


def level_of(event: str) -> str:
    """``error``, ``warning`` or ``info`` for an event name."""
    if event in _ERROR_EVENTS or event.endswith(("-failure", "-error")):
        return "error"
    if event in _WARNING_EVENTS or event.endswith("-warning"):
        return "warning"
    return "info"


def _stderr_is_journal() -> bool:
    """True when systemd connected stderr to the journal (``JOURNAL_STREAM=dev:ino``)."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return bool(ino) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


class EventLog:
    def __init__(self, json_lines: bool) -> None:
        self.json = json_lines
        self.journal = _stderr_is_journal()
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        level = level_of(event)
        if self.json:
            record = {"message_type": "event", "ts": ts, "level": level, "event": event,
                      "job": fields.pop("job", None),
                      "store": fields.pop("store", None), **fields}  # fmt: skip
            line = json.dumps(record, default=str)
        else:
            parts = [ts, level, event]
            parts += [f"{k}={_text(v)}" for k, v in fields.items() if v is not None]
            line = " ".join(parts)
        if self.journal:
            line = f"<{_PRIORITY[level]}>{line}"
        with self._lock:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def _text(v: Any) -> str:
    """A text line's value: as it is, or JSON-quoted when empty, holding a space, ``"``,
    ``=`` or anything not printable (a path's ESC or U+202E: JSON escapes it), so no value
    can drive the terminal or forge a field."""
    if isinstance(v, list | tuple):
        if not v:
            return "-"
        s = ",".join(str(x) for x in v)
    else:
        s = str(v)
    return (json.dumps(s) if not s or not s.isprintable()
            or any(c.isspace() or c in "\"=" for c in s) else s)


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
