"""``casbackup status``: every configured store (or one ``--store``), the daemon's jobs and
watches, at a glance.

Invariants: read only (no lock taken, none removed). Store facts come from
``ops.status.probe``; job facts from the daemon's state file (``daemon.state``), with the
next run computed from the cron expression when the daemon has not recorded one. Exit 0
when every store could be opened, else the exit code of the first failure (after
printing the whole report).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from ..clock import SYSTEM
from ..errors import CasError, UsageError
from ..ops.status import StoreStatus, display_url, probe
from .cmd_config import ConfigOpt, load_checked, next_runs
from .common import JsonOpt, StoreArgs, echo, human_bytes, store_options
from .output import emit, rfc3339

if TYPE_CHECKING:  # yaml and croniter load only when a daemon command runs
    from ..daemon.config import Config
    from ..daemon.state import State


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{max(0.0, seconds):.0f}s ago"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (the state file is local to the daemon's host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _probe_configured(cfg: Config, name: str) -> StoreStatus:
    from ..daemon.config import resolve_password

    sc = cfg.stores[name]
    try:
        pw = resolve_password(sc.password) if sc.password is not None else None
    except UsageError as e:
        return StoreStatus(sc.url, reachable=False, error=str(e), exit_code=e.exit_code)
    from ..daemon.jobs import cache_settings as configured_cache

    return probe(sc.url, (lambda: pw) if pw is not None else None,
                 cache=configured_cache(sc))


def _jobs(cfg: Config, state: State, now: datetime) -> list[dict[str, Any]]:
    out = []
    for job in cfg.jobs.values():
        js = state.jobs.get(job.name)
        nxt = js.next_run if js is not None else None
        if nxt is None or nxt < now:  # no daemon, or it is stopped: when the cron says
            nxt = next_runs(job, now)[0]
        out.append({
            "name": job.name, "type": job.type, "store": job.store, "cron": job.cron,
            "last_run": js.last_run.isoformat() if js and js.last_run else None,
            "last_result": js.last_result if js else None,
            "last_success": js.last_success.isoformat() if js and js.last_success else None,
            "last_duration": js.last_duration if js else None,
            "last_error": js.last_error if js else None,
            "runs": js.runs if js else 0, "failures": js.failures if js else 0,
            "next_run": nxt.astimezone(UTC).isoformat(),
        })  # fmt: skip
    return out


@store_options()
def status_cmd(config: ConfigOpt = None, json_out: JsonOpt = False, *, so: StoreArgs) -> None:
    """Show each store (reachable, size, snapshots, last snapshot age, locks), the daemon's
    jobs (last run, result, next run) and watches."""
    now = SYSTEM.now()
    report: dict[str, Any] = {"stores": {}, "jobs": [], "watches": [], "daemon": None}
    if so.store and not config:
        ctx = so.ctx(json_out)
        stores = {display_url(ctx.url): probe(ctx.url, ctx.password_source(), cache=ctx.cache)}
    else:
        from ..daemon.state import State, load_state, state_path

        path, cfg = load_checked(config)
        report["config"] = str(path.resolve())
        stores = {name: _probe_configured(cfg, name) for name in cfg.stores}
        spath = state_path(path, cfg.state)
        try:
            state = load_state(spath)
        except CasError as e:
            report["state_error"] = str(e)
            state = State()
        report["state"] = str(spath)
        report["jobs"] = _jobs(cfg, state, now)
        report["watches"] = [
            {"source": w.source, "store": w.store, "sync_to": list(w.sync_to),
             **state.watches.get(f"{w.source}->{w.store}", {})} for w in cfg.watches
        ]  # fmt: skip
        if state.daemon_pid is not None:
            report["daemon"] = {
                "pid": state.daemon_pid,
                "running": state.daemon_stopped is None and _alive(state.daemon_pid),
                "started": state.daemon_started.isoformat() if state.daemon_started else None,
                "stopped": state.daemon_stopped.isoformat() if state.daemon_stopped else None,
            }
    report["stores"] = {n: st.to_map(now.timestamp()) for n, st in stores.items()}
    if json_out:
        emit("status_report", _json_report(report))
    else:
        _render(report, stores, now)
    failed = [name for name, st in stores.items() if not st.reachable]
    if failed:
        err = CasError(f"{len(failed)} of {len(stores)} store(s) unreachable: {', '.join(failed)}")
        err.exit_code = stores[failed[0]].exit_code or 1
        raise err


def _json_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report under docs/json.md's units: RFC 3339 times, ``*_seconds``; the
    logical-to-stored ratio is named for what it is (``stats``' dedup_ratio is another
    number: logical size over unique data)."""
    stores = {}
    for name, m in report["stores"].items():
        m = dict(m)
        m["last_snapshot_time"] = rfc3339(m["last_snapshot_time"])
        m["last_snapshot_age_seconds"] = m.pop("last_snapshot_age")
        m["logical_to_stored_ratio"] = m.pop("dedup_ratio")
        m["locks"] = [{**lk, "time": rfc3339(lk["time"])} for lk in m["locks"]]
        stores[name] = m
    jobs = [{**{k: v for k, v in j.items() if k != "last_duration"},
             "last_duration_seconds": j["last_duration"]} for j in report["jobs"]]
    return {**report, "stores": stores, "jobs": jobs}


def _render(report: dict[str, Any], stores: dict[str, StoreStatus], now: datetime) -> None:
    if "config" in report:
        echo(f"config: {report['config']}")
    echo("stores:")
    for name, st in stores.items():
        if not st.reachable:
            echo(f"  {name}: UNREACHABLE: {st.error}")
            continue
        ratio = f", logical/stored {st.dedup_ratio:.2f}x" if st.dedup_ratio else ""
        last = now.timestamp() - st.last_snapshot_time if st.last_snapshot_time else None
        echo(f"  {name}: reachable, {human_bytes(st.size_bytes)} in {st.packs} packs{ratio}, "
             f"{st.snapshots} snapshots, last {_age(last)}")
        for lk, m in zip(st.locks, report["stores"][name]["locks"], strict=True):
            kind = "exclusive" if lk.exclusive else "shared"
            stale = " (stale: `casbackup unlock` removes it)" if m["stale"] else ""
            echo(f"    lock: {kind} {lk.operation} by pid {lk.pid} on {lk.hostname}, "
                 f"{_age(now.timestamp() - lk.time)}{stale}")
    if report.get("daemon"):
        d = report["daemon"]
        if d["running"]:
            echo(f"daemon: running (pid {d['pid']}), started {d['started']}")
        elif d["stopped"]:
            echo(f"daemon: stopped {d['stopped']}")
        else:
            echo(f"daemon: not running (pid {d['pid']} ended without a clean stop)")
    if report.get("jobs"):
        echo("jobs:")
    for j in report["jobs"]:
        if j["last_run"]:
            ran = datetime.fromisoformat(j["last_run"])
            res = f"last {j['last_result']} {_age((now - ran).total_seconds())}"
            if j["last_result"] == "failure" and j["last_error"]:
                res += f" ({j['last_error']})"
        else:
            res = "never run"
        echo(f"  {j['name']}: {j['type']} on {j['store']}, {res}, next {j['next_run']}")
    if report.get("watches"):
        echo("watches:")
    for w in report["watches"]:
        line = f"  {w['source']} -> {w['store']}"
        line += f", then {', '.join(w['sync_to'])}" if w["sync_to"] else ""
        if w.get("error"):
            line += f": STOPPED: {w['error']}"
        elif "snapshots" in w:
            t = w.get("last_snapshot_time")
            line += f": {w['snapshots']} snapshots, last {_age(now.timestamp() - t if t else None)}"
        echo(line)
    if report.get("state_error"):
        echo(f"warning: {report['state_error']}")


def register(app: typer.Typer) -> None:
    app.command("status")(status_cmd)
