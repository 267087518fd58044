"""``casbackup gc`` (alias ``prune``): remove unreferenced data, repack, consolidate index."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops.gc import gc
from .common import (
    Ctx,
    VerboseOpt,
    store_command,
)
from .maintopts import (
    KeepUnindexedOpt,
    MaxUnusedOpt,
    RetryLockOpt,
    default_keep_unindexed,
    gc_fields,
    gc_options,
    parse_span,
    render_gc,
)
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .output import emit
from .progress import CliObserver
from .signals import on_interrupt


@store_command
def gc_cmd(
    ctx: Ctx,
    max_unused: MaxUnusedOpt = "5%",
    keep_unindexed_for: KeepUnindexedOpt = default_keep_unindexed(),
    retry_lock: RetryLockOpt = "0",
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Report only.")] = False,
    max_wait: Annotated[str, typer.Option(
        "--max-wait", help="Wait this long for running sessions before deleting what "
                           "this run condemned (else a later gc deletes it).")] = "10s",
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
    verbose: VerboseOpt = 0,
) -> None:
    """Delete data no snapshot uses and repack mostly-unused packs (runs beside backups)."""
    on_interrupt("gc did not finish: the store is consistent, run gc again to free the rest")
    opts = gc_options(max_unused, keep_unindexed_for, retry_lock, dry_run)
    opts.max_wait = parse_span(max_wait, "--max-wait")
    with ctx.open() as st, job_metrics(metrics_file, st, metrics_job or "gc") as record:
        rep = gc(st, opts, CliObserver(json_lines=ctx.json, verbose=verbose))
        record(rep)
    if ctx.json:
        emit("summary", gc_fields(rep))
    else:
        render_gc(rep)


def register(app: typer.Typer) -> None:
    app.command("gc")(gc_cmd)
    app.command("prune", help="Alias of `gc`.")(gc_cmd)
