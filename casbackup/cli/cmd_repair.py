"""``casbackup repair``: take damaged packs out of the index (salvaging their good blobs),
then name the files that lost data; ``verify --repair-index`` rebuilds the index."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops.repair import RebuildReport, rebuild_index, repair
from ..ops.verify import verify
from ..store import Store
from .common import (
    Ctx,
    echo,
    store_command,
    warn,
)
from .maintopts import RetryLockOpt, parse_span
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .output import emit
from .progress import CliObserver
from .signals import on_interrupt


@store_command
def repair_cmd(
    ctx: Ctx,
    retry_lock: RetryLockOpt = "0",
    rebuild: Annotated[bool, typer.Option(
        "--rebuild-index", help="Rebuild the index from pack headers first.")] = False,
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
) -> None:
    """Read every pack; drop damaged ones from the index, keeping their good blobs."""
    on_interrupt("repair did not finish: the store is consistent, run repair again")
    retry = parse_span(retry_lock, "--retry-lock")
    obs = CliObserver(json_lines=ctx.json)
    with ctx.open() as st, job_metrics(metrics_file, st, metrics_job or "repair") as record:
        rebuilt = rebuild_index(st, retry_lock=retry, observer=obs) if rebuild else None
        rep = repair(st, retry_lock=retry, observer=obs)
        after = verify(st)  # structure only: which snapshots and files lost data
        record(rep, failure="; ".join(after.problems[:3]) if after.problems else None)
    rebuilt = rebuilt or rep.rebuilt
    lost = [{"snapshot": s, "path": p} for s, p in after.affected]
    if ctx.json:
        emit("summary", {"packs_checked": rep.packs_checked,
                   "damaged_packs": rep.damaged_packs, "blobs_salvaged": rep.blobs_salvaged,
                   "lost_blobs": len(rep.lost_blobs), "packs_written": rep.packs_written,
                   "index_before": rep.index_before, "index_after": rep.index_after,
                   "rebuilt": None if rebuilt is None else rebuilt.__dict__,
                   "damaged_snapshots_removed": sorted(rep.damaged_snapshots),
                   "affected": lost, "problems_left": after.problems})
        return
    if rebuilt is not None:
        render_rebuild(rebuilt)
    echo(f"checked {rep.packs_checked} packs: {len(rep.damaged_packs)} damaged")
    for name in rep.damaged_packs:
        echo(f"  packs/{name[:2]}/{name}: removed from the index")
    if rep.damaged_packs:
        echo(f"salvaged {rep.blobs_salvaged} blob(s) into {rep.packs_written} new pack(s); "
             f"{len(rep.lost_blobs)} blob(s) lost")
    for name, why in sorted(rep.damaged_snapshots.items()):
        echo(f"  snapshots/{name}: damaged ({why}), removed")
    for row in lost:
        warn(f"snapshot {row['snapshot'][:8]} {row['path']}: data lost; back up the source "
             "again to store it anew (old snapshots are healed by it too)")
    if not rep.changed:
        echo("nothing to repair")


def render_rebuild(rep: RebuildReport) -> None:
    echo(f"rebuilt the index from {rep.packs} pack(s), {rep.blobs} blob(s)"
         + (f", {rep.from_old_index} from the old index" if rep.from_old_index else "")
         + f"; index objects {rep.index_before} -> {rep.index_after}")
    for p in rep.problems:
        warn(p)


def register(app: typer.Typer) -> None:
    app.command("repair")(repair_cmd)


def rebuild_and_report(st: Store, json_out: bool) -> None:
    """``verify --repair-index``: rebuild, report, then verify goes on."""
    rep = rebuild_index(st, observer=CliObserver(json_lines=json_out))
    if json_out:
        emit("index_rebuilt", dict(rep.__dict__))
    else:
        render_rebuild(rep)
