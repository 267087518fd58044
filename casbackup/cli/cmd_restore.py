"""``casbackup restore``: recreate a snapshot's files.

Invariants: warnings and entries that could not be restored are printed as they happen
(by the observer), each naming its path; when any entry could not be restored the
command ends with ``PartialError`` (exit 3) after the summary.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import PartialError
from ..ops.restore import restore
from .common import (
    Ctx,
    VerboseOpt,
    echo,
    human_bytes,
    store_command,
)
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .output import emit
from .progress import CliObserver
from .signals import on_interrupt


@store_command
def restore_cmd(
    ctx: Ctx,
    snapshot: Annotated[str, typer.Argument(help="Snapshot id (prefix) or 'latest'.")],
    target: Annotated[str, typer.Argument(help="Directory to restore into.")],
    include: Annotated[
        list[str] | None,
        typer.Option("--include", "-i", help="Restore only paths matching (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-e", help="Leave out paths matching (repeatable)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Allow a non-empty target.")
    ] = False,
    verify_: Annotated[bool, typer.Option("--verify", help="Re-hash what was written.")] = False,
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
    verbose: VerboseOpt = 0,
) -> None:
    """Restore SNAPSHOT into TARGET (-v: list each file restored)."""
    on_interrupt(f"restore of {snapshot} into {target} is incomplete")
    obs = CliObserver(json_lines=ctx.json, verbose=verbose)
    with ctx.open() as st, job_metrics(metrics_file, st, metrics_job or "restore") as record:
        res = restore(
            st,
            snapshot,
            target,
            include=include,
            exclude=exclude,
            overwrite=overwrite,
            verify=verify_,
            observer=obs,
        )
        record(res, partial=f"{len(res.failed)} entries not restored" if res.failed else None)
    if ctx.json:
        done = obs.status()
        emit("summary", {
            "snapshot_id": res.snapshot.id,
            "seconds_elapsed": done["seconds_elapsed"],
            "total_files": done["total_files"],
            "files_restored": res.files,
            "dirs_restored": res.dirs,
            "total_bytes": done["total_bytes"],
            "bytes_restored": res.bytes_written,
            "warnings": res.warnings,
            "failed": res.failed,
            "verified": verify_,
        })
    else:
        echo(
            f"restored snapshot {res.snapshot.id[:8]}: {res.files} files, {res.dirs} "
            f"directories, {human_bytes(res.bytes_written)}"
            f"{' (verified)' if verify_ else ''}"
        )
    if res.failed:
        raise PartialError(
            f"{len(res.failed)} entries could not be restored (first: {res.failed[0]}); "
            "everything else was restored"
        )


def register(app: typer.Typer) -> None:
    app.command("restore")(restore_cmd)
