"""``casbackup config check``: validate casbackup.yaml and show what the daemon would do.

Invariant: checking reads the configuration file, and looks whether the source paths
and exclude files it names exist; no store is opened, no password resolved, no command
run (``casbackup test`` does that). An invalid file exits 2 with one line per problem
(every problem at once), each naming the file, the line and the key.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from ..ops.status import display_url
from .common import JsonOpt, echo
from .output import emit

if TYPE_CHECKING:  # yaml and croniter load only when a daemon command runs
    from ..daemon.config import Config, JobConfig

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="casbackup.yaml (default: $CASBACKUP_CONFIG, else "
                 "$XDG_CONFIG_HOME/casbackup/casbackup.yaml)."),
]  # fmt: skip


def load_checked(path: str | None, *, paths_exist: bool = False) -> tuple[Path, Config]:
    """Find and validate the configuration (``UsageError`` if missing or invalid; with
    ``paths_exist``, also when a source path or exclude file does not exist)."""
    from ..daemon.config import find_config_path, load_config, missing_paths

    p = find_config_path(path)
    if not p.exists():
        raise UsageError(f"{p}: no configuration file (use --config PATH)")
    cfg = load_config(p)
    missing = missing_paths(cfg) if paths_exist else []
    if missing:
        raise UsageError("\n".join(missing))
    return p, cfg


def next_runs(job: JobConfig, after: datetime, n: int = 1) -> list[datetime]:
    from ..daemon.schedule import next_run

    out: list[datetime] = []
    t = after.astimezone()
    for _ in range(n):
        t = next_run(job.cron, t)
        out.append(t)
    return out


def _job_map(job: JobConfig, now: datetime) -> dict[str, Any]:
    m: dict[str, Any] = {"name": job.name, "type": job.type, "cron": job.cron,
                         "store": job.store, "next_run": next_runs(job, now)[0].isoformat()}
    extra: dict[str, dict[str, Any]] = {
        "backup": {"source": job.source, "backup_type": job.backup_type, "tags": list(job.tags)},
        "dump": {"filename": job.filename, "tags": list(job.tags)},
        "sync": {"to": job.to},
        "forget": {"prune": job.prune},
        "verify": {"read_data_subset": job.read_data_subset},
    }
    m.update(extra.get(job.type, {}))
    m.update(retries=job.retries, retry_delay=job.retry_delay, catch_up=job.catch_up,
             timeout=job.timeout)  # fmt: skip
    return m


def summary(path: Path, config: Config, now: datetime) -> dict[str, Any]:
    return {
        "config": str(path),
        "valid": True,
        "stores": [{"name": s.name, "url": display_url(s.url), "password": str(s.password)
                    if s.password else None} for s in config.stores.values()],
        "sources": [{"name": s.name, "paths": list(s.paths), "excludes": list(s.excludes)}
                    for s in config.sources.values()],
        "jobs": [_job_map(j, now) for j in config.jobs.values()],
        "watches": [{"source": w.source, "store": w.store, "sync_to": list(w.sync_to)}
                    for w in config.watches],
        "metrics": f"{config.metrics.host}:{config.metrics.port}" if config.metrics else None,
    }  # fmt: skip


def check_cmd(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Validate the configuration; print its stores, sources, jobs and their next runs."""
    path, cfg = load_checked(config, paths_exist=True)
    now = datetime.now().astimezone()
    s = summary(path, cfg, now)
    if json_out:
        emit("config", {"path": s.pop("config"), **s})
        return
    w = max([len(n) for n in (*cfg.stores, *cfg.sources, *cfg.jobs)] + [8]) + 2
    echo(f"{path}: valid")
    echo(f"stores ({len(s['stores'])}):")
    for st in s["stores"]:
        echo(f"  {st['name']:<{w}} {st['url']}" + (f"  (password {st['password']})"
                                                  if st["password"] else "  (unencrypted)"))
    echo(f"sources ({len(s['sources'])}):")
    for src in s["sources"]:
        echo(f"  {src['name']:<{w}} {', '.join(src['paths'])}"
             + (f"  excluding {', '.join(src['excludes'])}" if src["excludes"] else ""))
    echo(f"jobs ({len(s['jobs'])}):")
    for j in cfg.jobs.values():
        what = {"backup": f"{j.backup_type} backup of {j.source}", "sync": f"sync to {j.to}",
                "dump": f"dump into {j.filename}",
                "forget": "forget" + (" + prune" if j.prune else ""), "gc": "gc",
                "verify": "verify" + (f" (read {j.read_data_subset})"
                                      if j.read_data_subset else "")}[j.type]  # fmt: skip
        at = next_runs(j, now)[0].strftime("%Y-%m-%d %H:%M:%S %Z")
        echo(f"  {j.name:<{w}} {what} on {j.store}, cron {j.cron!r}, next {at}")
    if cfg.watches:
        echo(f"watches ({len(cfg.watches)}):")
        for wc in cfg.watches:
            to = f", then sync to {', '.join(wc.sync_to)}" if wc.sync_to else ""
            echo(f"  {wc.source} -> {wc.store} (debounce {wc.debounce:g}s){to}")
    echo(f"metrics: {s['metrics']}" if s["metrics"] else "metrics: off")


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Check the daemon's configuration file.", no_args_is_help=True)
    config_app.command("check")(check_cmd)
    app.add_typer(config_app, name="config")
