"""``casbackup backup``: make a snapshot."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import PartialError
from ..ops.archiver import ArchiveOptions
from ..ops.backup import BackupOptions, backup, warm_sources
from ..ops.backup import stdin_filename as stdin_filename_check
from ..source.exclude import Excluder
from .common import (
    Ctx,
    echo,
    emit_json,
    human_bytes,
    store_command,
)
from .metricsfile import job_metrics
from .progress import CliObserver


@store_command
def backup_cmd(
    ctx: Ctx,
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files and directories to back up.")
    ] = None,
    type_: Annotated[
        str, typer.Option("--type", "-t", help="full | incremental | differential | snapshot")
    ] = "incremental",
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag the snapshot (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-x", help="gitignore-style pattern to leave out (repeatable)."),
    ] = None,
    exclude_file: Annotated[
        list[str] | None,
        typer.Option("--exclude-file", help="File of gitignore-style patterns (repeatable)."),
    ] = None,
    exclude_caches: Annotated[
        bool, typer.Option("--exclude-caches", help="Skip directories holding a CACHEDIR.TAG.")
    ] = False,
    one_file_system: Annotated[
        bool, typer.Option("--one-file-system", "-x1", help="Do not cross filesystem boundaries.")
    ] = False,
    stdin: Annotated[bool, typer.Option("--stdin", help="Back up standard input.")] = False,
    stdin_filename: Annotated[str, typer.Option(
        "--stdin-filename", help="Name of the --stdin file: a plain name, no '/'.")] = "stdin",
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Write nothing.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="Record this hostname.")] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Use this parent snapshot.")
    ] = None,
    metrics_file: Annotated[str | None, typer.Option(
        "--metrics-file", help="Write Prometheus metrics to this node_exporter textfile.")] = None,
) -> None:
    """Back up PATHS into the store as a new snapshot."""
    if stdin:
        stdin_filename_check(stdin_filename)  # a usage error before stdin is read
    excluder = Excluder.from_options(exclude or [], exclude_file or [], exclude_caches)
    opts = BackupOptions(
        type=type_,
        tags=tag or [],
        host=host,
        parent=parent,
        archive=ArchiveOptions(excluder=excluder, one_file_system=one_file_system, dry_run=dry_run,
                               prefetch=False),
        stdin=sys.stdin.buffer if stdin else None,
        stdin_filename=stdin_filename,
    )
    obs = CliObserver(json_lines=ctx.json)
    # The disk warms the sources' inodes while the key is unlocked and the index loaded.
    with warm_sources([] if stdin else paths or [], excluder, obs), ctx.open() as st, \
            job_metrics(metrics_file, st, "backup") as record:
        res = backup(st, paths or [], opts, obs)
        record(res)
    s = res.summary
    if ctx.json:
        out = {
            "type": "summary",
            "snapshot_id": res.snapshot.id if res.saved else None,
            "dry_run": dry_run,
            "backup_type": res.snapshot.type,
            "parent": res.snapshot.parent,
            **s.to_map(),
        }
        emit_json(out)
    else:
        if res.saved:
            echo(
                f"snapshot {res.snapshot.id[:8]} saved ({res.snapshot.type}"
                f"{', parent ' + res.snapshot.parent[:8] if res.snapshot.parent else ''})"
            )
        else:
            echo("dry run: nothing was written")
        echo(
            f"Files: {s.files_new} new, {s.files_changed} changed, "
            f"{s.files_unchanged} unchanged; {s.dirs} directories"
        )
        echo(
            f"Read {human_bytes(s.bytes_read)} of {human_bytes(s.total_size)}; added "
            f"{human_bytes(s.bytes_added)} ({human_bytes(s.bytes_stored)} stored) "
            f"in {s.duration:.2f} s"
        )
    if s.unreadable:
        raise PartialError(
            f"{s.unreadable} source file(s) could not be read (see warnings); "
            "the snapshot holds everything else"
        )


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_cmd)
