"""``casbackup verify``: check a store's structure and, optionally, data."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import IntegrityError
from ..ops.verify import verify
from .common import (
    Ctx,
    echo,
    store_command,
)
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .output import emit
from .progress import CliObserver
from .signals import on_interrupt


@store_command
def verify_cmd(
    ctx: Ctx,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Read and re-hash every blob.")
    ] = False,
    read_data_subset: Annotated[
        str | None, typer.Option("--read-data-subset", help="Read only packs N/M or P% of them.")
    ] = None,
    repair_index: Annotated[bool, typer.Option(
        "--repair-index", help="First rebuild the index from the pack headers.")] = False,
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
) -> None:
    """Verify the store; exit 13 naming every damaged object and what it affects."""
    on_interrupt("verify did not finish: the store was not checked completely")
    with ctx.open() as st, job_metrics(metrics_file, st, metrics_job or "verify") as record:
        if repair_index:
            from .cmd_repair import rebuild_and_report

            rebuild_and_report(st, ctx.json)
        rep = verify(
            st,
            read_data=read_data,
            subset=read_data_subset,
            observer=CliObserver(json_lines=ctx.json),
        )
        record(rep, failure=None if rep.ok else f"{len(rep.problems)} problem(s)")
    if ctx.json:
        emit(
            "summary",
            {
                "ok": rep.ok,
                "problems": rep.problems,
                "notes": rep.notes,
                "affected": [{"snapshot": s, "path": p} for s, p in rep.affected],
                "snapshots": rep.snapshots,
                "trees": rep.trees,
                "packs_checked": rep.packs_checked,
                "packs_read": rep.packs_read,
                "blobs_read": rep.blobs_read,
            }
        )
    else:
        echo(
            f"checked {rep.snapshots} snapshots, {rep.trees} trees, {rep.packs_checked} packs"
            + (f", read {rep.packs_read} packs / {rep.blobs_read} blobs" if rep.packs_read else "")
        )
        for n in rep.notes:
            echo(f"note: {n}")
        for p in rep.problems:
            echo(f"error: {p}")
        for sid, path in rep.affected:
            echo(f"affected: snapshot {sid[:8]} {path}")
    if not rep.ok:
        raise IntegrityError(f"store has {len(rep.problems)} problem(s)")
    if not ctx.json:
        echo("no problems found")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_cmd)  # `test` (cmd_test.py): self-test, or verify --store
