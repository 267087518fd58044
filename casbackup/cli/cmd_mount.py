"""``casbackup mount MOUNTPOINT``: browse the snapshots as a read-only FUSE filesystem.

Invariants: runs in the foreground until unmounted (Ctrl-C, SIGTERM, or ``fusermount3 -u
MOUNTPOINT`` from elsewhere) and then exits 0 with one line on stderr; FUSE missing (the
mfusepy binding, libfuse 3 or /dev/fuse) is one line and exit 1, a bad mount point (not
an empty directory, already a mount point, a dead FUSE mount left by a killed server: the
line names ``fusermount3 -u``, or not writable by a non-root user) exit 2, both before the
store is opened. A ``--host/--tag/--path`` selection that matches no
snapshot yet is a warning, not an error: the mount shows snapshots as they come.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..mount import fuse
from ..mount.fs import MountFS
from ..mount.serve import check_mountpoint, serve
from ..ops.snapsel import SnapshotFilter
from .common import Ctx, store_command, warn
from .filteropts import PathFilterOpt, TagFilterOpt


@store_command
def mount_cmd(
    ctx: Ctx,
    mountpoint: Annotated[str, typer.Argument(help="An existing empty directory to mount on.")],
    host: Annotated[list[str] | None, typer.Option(
        "--host", "-H", metavar="HOST", help="Only snapshots of this host (repeatable).")
    ] = None,
    tag: TagFilterOpt = None,
    path: PathFilterOpt = None,
    refresh: Annotated[float, typer.Option(
        "--refresh", metavar="SECONDS", min=0.0,
        help="Look for new snapshots at most this often (on a listing or lookup of the "
        "directories above them).")] = 30.0,
    allow_other: Annotated[bool, typer.Option(
        "--allow-other", help="Let other users use the mount (the stored modes and owners "
        "still apply; needs user_allow_other in /etc/fuse.conf unless root).")] = False,
) -> None:
    """Mount the store's snapshots read-only at MOUNTPOINT: snapshots/<time>/, ids/<id>/,
    hosts/<host>/<time>/, tags/<tag>/<time>/ and 'latest' links."""
    fuse.check_available()
    check_mountpoint(mountpoint)
    select = SnapshotFilter.of(host, tag, path)

    def ready(fs: MountFS) -> None:
        shown = fs.snapshots()
        if select.active() and not shown:
            warn(f"no snapshot matches {select.describe()} yet")
        if not ctx.quiet:
            typer.echo(f"casbackup: mounted {len(shown)} snapshots at {mountpoint}; unmount with "
                       f"Ctrl-C or `fusermount3 -u {mountpoint}`", err=True)

    with ctx.open() as st:
        serve(st, mountpoint, select, refresh=refresh, allow_other=allow_other, warn=warn,
              on_ready=ready)
    if not ctx.quiet:
        typer.echo(f"casbackup: unmounted {mountpoint}", err=True)


def register(app: typer.Typer) -> None:
    app.command("mount")(mount_cmd)
