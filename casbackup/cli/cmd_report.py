"""``casbackup report --html FILE``: the daemon's status page, written for a store (or for
every store, job and recent run of a configuration) without a daemon.

Invariants: read only (no lock is written: the stores are only listed and their snapshot
objects read); the file is replaced atomically; a store that cannot be opened is shown as
unreachable on the page and makes the exit code that of its error.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from typing import Annotated

import typer

from ..errors import CasError, UsageError
from .cmd_config import ConfigOpt, load_checked
from .common import StoreArgs, echo, store_options


@store_options()
def report_cmd(
    html_path: Annotated[str, typer.Option("--html", metavar="FILE",
                                           help="Write the status page to FILE.")],
    config: ConfigOpt = None,
    title: Annotated[str, typer.Option("--title", help="The page's title.")] = "casbackup",
    *,
    so: StoreArgs,
) -> None:
    """Write an HTML status page: sizes, dedup and durations per snapshot, jobs, runs."""
    from ..daemon.page import PageData, render_timed
    from ..daemon.state import State, load_state, state_path
    from ..daemon.statuspage import StatusPage, job_rows
    from ..ops.report import StoreReport, store_report
    from ..ops.status import StoreStatus

    now = datetime.now().astimezone()
    if config is not None or (so.store is None and not os.environ.get("CASBACKUP_STORE")):
        path, cfg = load_checked(config)
        state = load_state(state_path(path, cfg.state)) if cfg.jobs else State()
        reports = StatusPage(max_age=0).reports(cfg)
        data = PageData(title, now.timestamp(), reports, job_rows(cfg, state, now),
                        list(state.history))
    else:
        ctx = so.ctx(default_store=os.environ.get("CASBACKUP_STORE"))
        try:
            with ctx.open() as st:
                reports = [store_report(ctx.url, st)]
        except CasError as e:
            reports = [StoreReport(ctx.url, StoreStatus(ctx.url, error=str(e),
                                                        exit_code=e.exit_code))]
        data = PageData(title, now.timestamp(), reports)
    page, took = render_timed(data)
    _write(html_path, page)
    snaps = sum(len(r.snapshots) for r in reports)
    echo(f"wrote {html_path}: {len(reports)} store(s), {snaps} snapshot(s), "
         f"{len(data.jobs)} job(s), rendered in {took * 1000:.0f} ms")
    bad = [r for r in reports if not r.status.reachable]
    if bad:
        err = CasError(f"store {bad[0].name} unreachable: {bad[0].status.error}")
        err.exit_code = bad[0].status.exit_code or 1
        raise err


def _write(path: str, text: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=d)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from e


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)

