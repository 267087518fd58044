"""``casbackup backup``: make a snapshot."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from ..errors import PartialError, UsageError
from ..ops.archiver import ArchiveOptions
from ..ops.backup import BackupOptions, backup, warm_sources
from ..ops.backup import stdin_filename as stdin_filename_check
from ..ops.snapsel import split_commas
from ..source.command import CommandSource
from ..source.exclude import Excluder, parse_size, pattern_lines
from ..source.pathlist import read_paths
from .common import (
    Ctx,
    VerboseOpt,
    echo,
    human_bytes,
    store_command,
    utf8_arg,
    warn,
)
from .filteropts import parse_time
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .output import backup_summary, emit, rfc3339
from .progress import CliObserver
from .signals import on_interrupt


@store_command
def backup_cmd(
    ctx: Ctx,
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files and directories to back up.")
    ] = None,
    type_: Annotated[str, typer.Option(
        "--type", "-t", metavar="TYPE",
        help="full | incremental | differential | snapshot")] = "incremental",
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", metavar="TAG[,TAG…]", help="Tag the snapshot (a,b: two tags; repeatable).")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", "-e", metavar="PATTERN",
        help="gitignore-style pattern to leave out; /abs/path matches that absolute path "
             "(repeatable).")] = None,
    iexclude: Annotated[list[str] | None, typer.Option(
        "--iexclude", metavar="PATTERN",
        help="Like --exclude, ignoring case (repeatable).")] = None,
    exclude_file: Annotated[list[str] | None, typer.Option(
        "--exclude-file", metavar="FILE",
        help="File of gitignore-style patterns (repeatable).")] = None,
    iexclude_file: Annotated[list[str] | None, typer.Option(
        "--iexclude-file", metavar="FILE",
        help="Like --exclude-file, ignoring case (repeatable).")] = None,
    exclude_caches: Annotated[
        bool, typer.Option("--exclude-caches", help="Skip directories holding a CACHEDIR.TAG.")
    ] = False,
    exclude_if_present: Annotated[list[str] | None, typer.Option(
        "--exclude-if-present", metavar="NAME[:HEADER]",
        help="Skip the contents of directories holding file NAME (starting with HEADER; "
             "repeatable).")] = None,
    exclude_larger_than: Annotated[str | None, typer.Option(
        "--exclude-larger-than", metavar="SIZE",
        help="Leave out files larger than SIZE (e.g. 500k, 10M, 1G).")] = None,
    files_from: Annotated[list[str] | None, typer.Option(
        "--files-from", metavar="FILE",
        help="Back up the paths listed in FILE, one a line, # comments ('-': stdin; "
             "repeatable).")] = None,
    files_from_raw: Annotated[list[str] | None, typer.Option(
        "--files-from-raw", metavar="FILE",
        help="Back up the NUL-separated paths in FILE ('-': stdin; repeatable).")] = None,
    one_file_system: Annotated[
        bool, typer.Option("--one-file-system", "-x", help="Do not cross filesystem boundaries.")
    ] = False,
    stdin: Annotated[bool, typer.Option("--stdin", help="Back up standard input.")] = False,
    stdin_from_command: Annotated[str | None, typer.Option(
        "--stdin-from-command", metavar="CMD",
        help="Back up CMD's standard output; commit only if CMD exits 0.")] = None,
    stdin_filename: Annotated[str, typer.Option(
        "--stdin-filename", metavar="NAME",
        help="Name of the --stdin file: a plain name, no '/'.")] = "stdin",
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Write nothing.")] = False,
    host: Annotated[str | None, typer.Option(
        "--host", "-H", metavar="HOST", help="Record this hostname.")] = None,
    time_: Annotated[str | None, typer.Option(
        "--time", metavar="TIME",
        help="The snapshot's time, e.g. '2026-01-02 03:04:05' (local; default: now).")] = None,
    parent: Annotated[str | None, typer.Option(
        "--parent", metavar="SNAPSHOT", help="Use this parent snapshot.")] = None,
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
    verbose: VerboseOpt = 0,
) -> None:
    """Back up PATHS into the store as a new snapshot."""
    on_interrupt("backup did not finish: no snapshot was written")
    if stdin or stdin_from_command is not None:
        stdin_filename_check(stdin_filename)  # a usage error before stdin is read
    excluder = Excluder.from_options(
        exclude or [], exclude_file or [], exclude_caches,
        ipatterns=[*(iexclude or []), *pattern_lines(iexclude_file or [])],
        markers=exclude_if_present or [],
        larger_than=parse_size(exclude_larger_than) if exclude_larger_than else None)
    paths = [*(paths or []), *(p for f in files_from or [] for p in read_paths(f)),
             *(p for f in files_from_raw or [] for p in read_paths(f, raw=True))]
    with contextlib.ExitStack() as stack:
        stream = None
        check = None
        if stdin_from_command is not None:
            if paths:
                raise UsageError("give either PATHS or --stdin-from-command, not both")
            cmd = stack.enter_context(CommandSource(stdin_from_command))
            stream, check = cmd.stdout, cmd.check
        elif stdin:
            stream = sys.stdin.buffer
        opts = BackupOptions(
            type=type_,
            tags=[utf8_arg(t, "--tag") for t in split_commas(tag or [])],
            time=parse_time(time_) if time_ is not None else None,
            host=utf8_arg(host, "--host") if host is not None else None,
            parent=parent,
            archive=ArchiveOptions(excluder=excluder, one_file_system=one_file_system,
                                   dry_run=dry_run, prefetch=False),
            stdin=stream,
            stdin_filename=stdin_filename,
            stdin_check=check,
        )
        obs = CliObserver(json_lines=ctx.json, verbose=verbose)
        # The disk warms the sources' inodes while the key is unlocked and the index loaded.
        stack.enter_context(warm_sources([] if stream is not None else paths or [], excluder, obs,
                                         one_file_system=one_file_system))
        st = stack.enter_context(ctx.open())
        with job_metrics(metrics_file, st, metrics_job or "backup") as record:
            res = backup(st, paths or [], opts, obs)
            record(res)
    if stream is None:
        for pat in excluder.unmatched():
            warn(f"exclude pattern {pat} matched nothing")
    s = res.summary
    if ctx.json:
        emit("summary", {
            "snapshot_id": res.snapshot.id if res.saved else None,
            "dry_run": dry_run,
            "backup_type": res.snapshot.type,
            "parent": res.snapshot.parent,
            "backup_start": rfc3339(res.snapshot.datetime),
            "backup_end": rfc3339(res.snapshot.time + s.duration),
            **backup_summary(s),
        })
    elif not ctx.quiet:
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
