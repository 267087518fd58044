"""``casbackup dump SNAP[:SUB] [PATH]``: a file's bytes, or a directory as tar or zip.

Invariants: the data goes to stdout, or with ``--target FILE`` to FILE, which is removed
again if the dump fails; nothing else is written to stdout unless ``--target`` is given
(then a one-line summary, or JSON). Entries an archive format cannot hold are warnings.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, BinaryIO

import typer

from ..errors import UsageError
from ..ops.dump import ARCHIVES, dump
from ..ops.snapsel import SnapshotFilter, resolve, split_ref
from .common import Ctx, echo, human_bytes, store_command, warn
from .escape import shown
from .filteropts import snapshot_filter_options
from .output import emit
from .stripopt import StripOpt


@store_command
@snapshot_filter_options
def dump_cmd(
    ctx: Ctx,
    snapshot: Annotated[str, typer.Argument(
        help="Snapshot id (prefix) or 'latest', optionally SNAP:PATH (PATH is then the "
        "root of the dump).")],
    path: Annotated[str, typer.Argument(help="File or directory inside the snapshot.")
                    ] = "/",
    archive: Annotated[str, typer.Option(
        "--archive", "-a", help="Archive format for a directory: tar (PAX) or zip.")
    ] = "tar",
    target: Annotated[str | None, typer.Option(
        "--target", "-t", help="Write to this file instead of stdout.")] = None,
    strip: StripOpt = 0,
    *,
    filt: SnapshotFilter,
) -> None:
    """Write a file of SNAPSHOT to stdout, or a directory as a tar or zip archive."""
    if archive not in ARCHIVES:
        raise UsageError(f"--archive {archive}: not one of {', '.join(ARCHIVES)}")
    if ctx.json and target is None:
        raise UsageError("--json needs --target FILE: stdout carries the dump itself")
    ref, sub = split_ref(snapshot)
    with ctx.open() as st:
        snap = resolve(st, ref, filt)
        if target is None:
            out: BinaryIO = sys.stdout.buffer
            res = dump(st, snap, sub, path, out, archive=archive, warn=warn, strip=strip)
            out.flush()
            return
        try:
            with open(target, "wb") as f:
                res = dump(st, snap, sub, path, f, archive=archive, warn=warn, strip=strip)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
    if ctx.json:
        emit("summary", {"snapshot_id": snap.id, "path": shown(os.fsdecode(res.path)),
                         "archive": res.archive, "entries": res.entries,
                         "written_bytes": res.bytes, "skipped": res.skipped,
                         "target": target})
    else:
        what = f"{res.entries} entries as {res.archive}" if res.archive else "1 file"
        echo(f"dumped {os.fsdecode(res.path)} of snapshot {snap.id[:8]}: {what}, "
             f"{human_bytes(res.bytes)} to {target}")


def register(app: typer.Typer) -> None:
    app.command("dump")(dump_cmd)
