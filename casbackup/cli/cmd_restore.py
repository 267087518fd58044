"""``casbackup restore``: recreate a snapshot's files.

Invariants: warnings and entries that could not be restored are printed as they happen
(by the observer), each naming its path; when any entry could not be restored the
command ends with ``PartialError`` (exit 3) after the summary; when an ``--include``
pattern matched nothing, with ``NothingMatched`` (exit 4: before anything is written
when none matched, else after restoring what the others matched). ``--dry-run`` writes
nothing: it prints each entry's action (restic's ``restored``, ``updated``,
``unchanged``, ``deleted``; with ``--json`` one ``verbose_status`` line each) and the
summary, whose field names are restic's (``files_restored``, ``bytes_restored``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

import typer

from ..errors import NothingMatched, PartialError, UsageError
from ..ops.restore import restore
from ..ops.snapsel import SnapshotFilter
from .common import (
    Ctx,
    VerboseOpt,
    echo,
    human_bytes,
    store_command,
)
from .filteropts import snapshot_filter_options
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .output import emit
from .progress import CliObserver
from .signals import on_interrupt
from .stripopt import StripOpt


class Overwrite(StrEnum):
    always = "always"
    if_changed = "if-changed"
    if_newer = "if-newer"
    never = "never"


def _target(arg: str | None, opt: str | None) -> str:
    if arg is not None and opt is not None and arg != opt:
        raise UsageError(f"two targets given: {arg} and --target {opt}")
    target = arg if arg is not None else opt
    if target is None:
        raise UsageError("no target given: restore SNAPSHOT TARGET, or --target DIR")
    return target


@store_command
@snapshot_filter_options
def restore_cmd(
    ctx: Ctx,
    snapshot: Annotated[str, typer.Argument(
        help="Snapshot id (prefix) or 'latest', optionally with :PATH (that subtree).")],
    target_arg: Annotated[str | None, typer.Argument(
        metavar="TARGET",
        help="Directory to restore into ('/': where the files were backed up from).")] = None,
    target_opt: Annotated[str | None, typer.Option(
        "--target", "-t", metavar="DIR",
        help="TARGET as an option (restic's form).")] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", "-i", help="Restore only paths matching (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-e", help="Leave out paths matching (repeatable)."),
    ] = None,
    # --- in place (issue #14): what to do with what the target already holds ---
    overwrite: Annotated[
        Overwrite | None,
        typer.Option("--overwrite", metavar="MODE", help=(
            "Restore into a non-empty target: always (compare every file's content), "
            "if-changed (size and mtime, then content), if-newer (only entries older "
            "than the snapshot's), never (leave existing entries). Only differing "
            "chunks of a file are rewritten.")),
    ] = None,
    delete: Annotated[bool, typer.Option(
        "--delete", help="Remove what the snapshot does not have (only inside "
        "backed-up paths and selected ones; never follows symlinks).")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "-n", help="Show what would be restored, updated and deleted; "
        "write nothing.")] = False,
    strip_components: StripOpt = 0,
    # --- end in place ---
    verify_: Annotated[bool, typer.Option("--verify", help="Re-hash what was written.")] = False,
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
    verbose: VerboseOpt = 0,
    *,
    filt: SnapshotFilter,
) -> None:
    """Restore SNAPSHOT into TARGET (-v: list each file restored)."""
    target = _target(target_arg, target_opt)
    on_interrupt(f"restore of {snapshot} into {target} is incomplete")
    obs = CliObserver(json_lines=ctx.json, verbose=verbose)
    with ctx.open() as st, job_metrics(metrics_file, st, metrics_job or "restore") as record:
        res = restore(
            st,
            snapshot,
            target,
            include=include,
            exclude=exclude,
            overwrite=overwrite.value if overwrite is not None else None,
            delete=delete,
            dry_run=dry_run,
            strip_components=strip_components,
            verify=verify_,
            observer=obs,
            filt=filt,
            on_action=_print_action(ctx.json) if dry_run else None,
        )
        record(res, partial=f"{len(res.failed)} entries not restored" if res.failed else None)
    if ctx.json:
        done = obs.status()
        emit("summary", {
            "snapshot_id": res.snapshot.id,
            "dry_run": dry_run,
            "seconds_elapsed": done["seconds_elapsed"],
            "total_files": res.total_files,
            "files_restored": res.total_files - res.unchanged - res.skipped,
            "files_skipped": res.unchanged + res.skipped,
            "files_deleted": res.deleted,
            "dirs_restored": res.dirs,
            "total_bytes": res.total_bytes,
            "bytes_restored": res.bytes_planned,
            "bytes_skipped": max(0, res.total_bytes - res.bytes_planned),
            "read_bytes": res.bytes_read,  # from the store
            "written_bytes": res.bytes_written,  # into the target
            "warnings": res.warnings,
            "failed": res.failed,
            "verified": verify_,
        })
    elif dry_run:
        echo(
            f"would restore {res.total_files - res.unchanged - res.skipped} of "
            f"{res.total_files} files ({human_bytes(res.bytes_planned)}), leave "
            f"{res.unchanged + res.skipped} unchanged, delete {res.deleted}"
        )
    else:
        echo(
            f"restored snapshot {res.snapshot.id[:8]}: {res.files} files, {res.dirs} "
            f"directories, {human_bytes(res.bytes_written)}"
            f"{' (verified)' if verify_ else ''}"
            + (f"; {res.unchanged + res.skipped} unchanged" if res.unchanged + res.skipped
               else "")
            + (f", {res.deleted} deleted" if res.deleted else "")
        )
    if res.failed:
        raise PartialError(
            f"{len(res.failed)} entries could not be restored (first: {res.failed[0]}); "
            "everything else was restored"
        )
    if res.unmatched:
        raise NothingMatched(
            f"--include {' '.join(res.unmatched)} matched nothing in snapshot "
            f"{res.snapshot.id[:8]}; what the other patterns matched was restored"
        )


def _print_action(json_lines: bool) -> Callable[[str, str, int], None]:
    def show(path: str, action: str, size: int) -> None:
        if json_lines:
            emit("verbose_status", {"action": action, "item": path, "size": size})
        else:
            echo(f"{action:<9} {path}" + (f" ({human_bytes(size)})" if size else ""))
    return show


def register(app: typer.Typer) -> None:
    app.command("restore")(restore_cmd)
