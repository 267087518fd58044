"""``casbackup stats [SNAPSHOT]``: sizes, dedup and compression of the store or a snapshot."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops.snapsel import SnapshotFilter
from ..ops.stats import stats
from .common import (
    Ctx,
    echo,
    human_bytes,
    store_command,
)
from .filteropts import snapshot_filter_options
from .output import emit


@store_command
@snapshot_filter_options
def stats_cmd(
    ctx: Ctx,
    snapshot: Annotated[str | None, typer.Argument(
        help="Snapshot id (prefix) or 'latest'; omitted: the whole store.")] = None,
    *,
    filt: SnapshotFilter,
) -> None:
    """Show logical and stored sizes, dedup and compression ratios, blob and pack counts."""
    with ctx.open() as st:
        s = stats(st, snapshot, filt)
    if ctx.json:
        emit("stats", {  # restic's stats --json names where it has the number
            "snapshot_id": s.snapshot, "snapshots_count": s.snapshots,
            "total_file_count": s.files, "total_dir_count": s.dirs,
            "total_size": s.logical_size, "unique_bytes": s.unique_size,
            "total_uncompressed_size": s.raw_size, "stored_bytes": s.stored_size,
            "total_blob_count": s.data_blobs + s.tree_blobs, "data_blobs": s.data_blobs,
            "tree_blobs": s.tree_blobs, "missing_blobs": s.missing_blobs,
            "packs": s.packs, "packs_by_kind": s.packs_by_kind, "pack_bytes": s.pack_bytes,
            "index_objects": s.index_objects, "index_blobs": s.index_blobs,
            "unreferenced_bytes": s.unreferenced,
            "dedup_ratio": round(s.dedup_ratio, 4),
            "compression_ratio": round(s.compression_ratio, 4)})
        return
    echo(f"snapshot {s.snapshot[:8]}" if s.snapshot else f"store: {s.snapshots} snapshot(s)")
    echo(f"  files:             {s.files} in {s.dirs} directories")
    echo(f"  logical size:      {human_bytes(s.logical_size)}")
    echo(f"  unique data:       {human_bytes(s.unique_size)} in {s.data_blobs} data blobs "
         f"(+ {s.tree_blobs} tree blobs)")
    echo(f"  stored:            {human_bytes(s.stored_size)}")
    echo(f"  dedup ratio:       {s.dedup_ratio:.2f}x")
    echo(f"  compression ratio: {s.compression_ratio:.2f}x")
    if s.missing_blobs:
        echo(f"  missing blobs:     {s.missing_blobs} (run `casbackup verify`)")
    if s.snapshot is None:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(s.packs_by_kind.items()))
        echo(f"  packs:             {s.packs} ({kinds or 'none'}), "
             f"{human_bytes(s.pack_bytes)}")
        echo(f"  index:             {s.index_blobs} blobs in {s.index_objects} object(s)")
        echo(f"  unreferenced:      {human_bytes(s.unreferenced)} (`casbackup gc` frees it)")


def register(app: typer.Typer) -> None:
    app.command("stats")(stats_cmd)
