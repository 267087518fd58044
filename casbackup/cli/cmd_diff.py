"""``casbackup diff SNAP1 SNAP2``: added, removed, modified and metadata-only changes."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops.diff import diff
from ..ops.snapsel import SnapshotFilter
from .common import (
    Ctx,
    echo,
    emit_json,
    human_bytes,
    store_command,
)
from .filteropts import snapshot_filter_options

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
        emit_json({"from": res.a.id, "to": res.b.id,
                   "changes": [{"path": c.path, "change": c.change, "type": c.type,
                                "size": c.size} for c in res.changes],
                   "summary": summary})
        return
    echo(f"comparing snapshot {res.a.id[:8]} to {res.b.id[:8]}:")
    for c in res.changes:
        echo(f"{_MARK[c.change]}    {c.path}{'/' if c.type == 'dir' else ''}")
    echo(f"{summary['added']} added, {summary['removed']} removed, {summary['modified']} "
         f"modified, {summary['metadata']} metadata only; files added "
         f"{human_bytes(summary['bytes_added'])}, removed {human_bytes(summary['bytes_removed'])}")


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_cmd)
