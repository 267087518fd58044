"""``casbackup diff SNAP1 SNAP2``: added, removed, modified and metadata-only changes."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops.diff import diff
from ..ops.snapsel import SnapshotFilter
from .common import (
    Ctx,
    echo,
    human_bytes,
    store_command,
)
from .filteropts import snapshot_filter_options
from .output import emit

_MARK = {"added": "+", "removed": "-", "modified": "M", "metadata": "U"}


@store_command
@snapshot_filter_options
def diff_cmd(
    ctx: Ctx,
    snapshot1: Annotated[str, typer.Argument(help="The older snapshot (id prefix or latest).")],
    snapshot2: Annotated[str, typer.Argument(help="The newer snapshot (id prefix or latest).")],
    *,
    filt: SnapshotFilter,
) -> None:
    """Show changes from SNAPSHOT1 to SNAPSHOT2: + added, - removed, M modified, U metadata."""
    with ctx.open() as st:
        res = diff(st, snapshot1, snapshot2, filt)
    summary = res.summary()
    if ctx.json:
        for c in res.changes:  # restic's diff --json: a ``change`` line per path
            emit("change", {"path": c.path, "modifier": _MARK[c.change], "change": c.change,
                            "type": c.type, "size": c.size})
        emit("summary", {"source_snapshot": res.a.id, "target_snapshot": res.b.id,
                         "added": summary["added"], "removed": summary["removed"],
                         "modified": summary["modified"], "metadata": summary["metadata"],
                         "added_bytes": summary["bytes_added"],
                         "removed_bytes": summary["bytes_removed"],
                         "trees_skipped": summary["trees_skipped"]})
        return
    echo(f"comparing snapshot {res.a.id[:8]} to {res.b.id[:8]}:")
    for c in res.changes:
        echo(f"{_MARK[c.change]}    {c.path}{'/' if c.type == 'dir' else ''}")
    echo(f"{summary['added']} added, {summary['removed']} removed, {summary['modified']} "
         f"modified, {summary['metadata']} metadata only; files added "
         f"{human_bytes(summary['bytes_added'])}, removed {human_bytes(summary['bytes_removed'])}")


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_cmd)
