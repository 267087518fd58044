"""``casbackup forget``: remove snapshots by retention policy (or by id); ``--prune`` runs gc."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from ..errors import NothingMatched, UsageError
from ..ops.forget import ForgetResult, forget, forget_ids
from ..ops.gc import GcReport, gc
from ..ops.retention import Policy, parse_duration
from ..ops.snapsel import SnapshotFilter, parse_group_by
from .common import (
    Ctx,
    echo,
    store_command,
    warn,
)
from .filteropts import PathFilterOpt, TagFilterOpt
from .maintopts import (
    KeepUnindexedOpt,
    MaxUnusedOpt,
    RetryLockOpt,
    default_keep_unindexed,
    gc_fields,
    gc_options,
    render_gc,
)
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .output import emit, rfc3339
from .progress import CliObserver
from .signals import on_interrupt


def _count(flag: str, short: str, help: str) -> Any:
    return typer.Option(None, flag, short, metavar="N", help=help)


@store_command
def forget_cmd(
    ctx: Ctx,
    ids: Annotated[list[str] | None, typer.Argument(
        help="Snapshot ids to forget (instead of a policy).")] = None,
    keep_last: int | None = _count("--keep-last", "-l", "Keep the N newest snapshots."),
    keep_hourly: int | None = _count("--keep-hourly", "-H", "Keep the newest of N hours."),
    keep_daily: int | None = _count("--keep-daily", "-d", "Keep the newest of N days."),
    keep_weekly: int | None = _count("--keep-weekly", "-w", "Keep the newest of N ISO weeks."),
    keep_monthly: int | None = _count("--keep-monthly", "-m", "Keep the newest of N months."),
    keep_yearly: int | None = _count("--keep-yearly", "-y", "Keep the newest of N years."),
    keep_within: Annotated[str | None, typer.Option(
        "--keep-within", metavar="DURATION",
        help="Keep snapshots newer than the group's latest minus this (e.g. 1y2m3d4h).")] = None,
    keep_tag: Annotated[list[str] | None, typer.Option(
        "--keep-tag", metavar="TAG[,TAG…]",
        help="Keep snapshots carrying these tags (a,b = both; repeatable).")] = None,
    group_by: Annotated[str, typer.Option(
        "--group-by", "-g", metavar="FIELD[,FIELD…]",
        help="Apply the policy per group of host,paths[,tags].")] = "host,paths",
    host: Annotated[list[str] | None, typer.Option(
        "--host", metavar="HOST", help="Only consider snapshots of this host (repeatable).")
    ] = None,
    tag: TagFilterOpt = None,
    path: PathFilterOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Only show the plan.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Run gc afterwards.")] = False,
    max_unused: MaxUnusedOpt = "5%",
    keep_unindexed_for: KeepUnindexedOpt = default_keep_unindexed(),
    retry_lock: RetryLockOpt = "0",
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
) -> None:
    """Forget snapshots that the policy does not keep (or those named by id). --host/--tag/
    --path filters that match none of the store's snapshots exit 4 (nothing matched)."""
    on_interrupt("forget did not finish: some snapshots it chose may remain")
    gopts = gc_options(max_unused, keep_unindexed_for, retry_lock, dry_run) if prune else None
    groups = parse_group_by(group_by)
    policy = Policy(
        keep_last=keep_last, keep_hourly=keep_hourly, keep_daily=keep_daily,
        keep_weekly=keep_weekly, keep_monthly=keep_monthly, keep_yearly=keep_yearly,
        keep_within=parse_duration(keep_within) if keep_within else None,
        keep_tags=tuple(keep_tag or ()), group_by=groups,
    )
    if ids and not policy.is_empty():
        raise UsageError("give either snapshot ids or a --keep-* policy, not both")
    rep: GcReport | None = None
    with ctx.open() as st, job_metrics(metrics_file, st, metrics_job or "forget") as record:
        select = SnapshotFilter.of(host, tag, path)
        res = (forget_ids(st, ids, dry_run=dry_run, filt=select) if ids
               else forget(st, policy, dry_run=dry_run, hosts=host, tags=tag, paths=path))
        if select.active() and res.total and not res.snapshots:  # a typo must not pass as 0
            raise NothingMatched(f"no snapshot matches {select.describe()}; "
                                 "nothing was forgotten")
        for miss in select.unmatched(list(res.snapshots.values())):
            warn(f"{miss} matched no snapshot")
        _render(res, ctx.json)
        if gopts is not None:
            on_interrupt("forget --prune did not finish: the snapshots are forgotten, "
                         "run gc to free their data")
            if dry_run:  # plan gc as if the snapshots were gone
                gopts.assume_forgotten = frozenset(res.removed)
            rep = gc(st, gopts, CliObserver(json_lines=ctx.json))
            record(rep)
            if not ctx.json and rep is not None:
                render_gc(rep)
    if ctx.json:
        emit("summary", {"dry_run": res.dry_run, "removed": res.removed, "kept": res.kept,
                         "prune": gc_fields(rep) if rep is not None else None})


def _render(res: ForgetResult, json_out: bool) -> None:
    if json_out:
        for key, decisions in res.groups.items():  # restic's forget --json: one per group
            emit("forget_group", {
                "host": key.hostname, "paths": list(key.paths) if key.paths is not None else None,
                "tags": list(key.tags) if key.tags is not None else None,
                "keep": [d.snapshot.id for d in decisions if d.keep],
                "remove": [d.snapshot.id for d in decisions if not d.keep],
                "snapshots": [{"id": d.snapshot.id, "time": rfc3339(d.snapshot.time),
                               "keep": d.keep, "reasons": list(d.reasons)} for d in decisions],
            })
        return
    verb = "to remove (dry run)" if res.dry_run else "removed"
    if not res.groups:  # by id
        for sid in res.removed:
            echo(f"{sid[:8]}  {'remove' if res.dry_run else 'removed'}")
    for key, decisions in res.groups.items():
        parts = [f"host {key.hostname}" if key.hostname is not None else "",
                 f"paths {', '.join(key.paths)}" if key.paths is not None else "",
                 f"tags {','.join(key.tags) or '-'}" if key.tags is not None else ""]
        echo(f"group: {'; '.join(p for p in parts if p) or 'all snapshots'}")
        for d in decisions:
            t = datetime.fromtimestamp(d.snapshot.time.timestamp()).strftime("%Y-%m-%d %H:%M:%S")
            action = "keep  " if d.keep else ("remove" if res.dry_run else "removed")
            why = ", ".join(d.reasons)
            echo(f"  {d.snapshot.id[:8]}  {t}  {action}  {why}".rstrip())
    kept = len(res.kept)
    echo(f"{len(res.removed)} snapshot(s) {verb}" + (f", {kept} kept" if res.groups else ""))


def register(app: typer.Typer) -> None:
    app.command("forget")(forget_cmd)
