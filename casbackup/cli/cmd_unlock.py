"""``casbackup unlock``: remove stale locks (or all with --remove-all)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..store.locks import list_locks, remove_stale
from .common import (
    Ctx,
    echo,
    store_command,
)
from .output import emit


@store_command
def unlock_cmd(
    ctx: Ctx,
    remove_all: Annotated[
        bool, typer.Option("--remove-all", help="Remove live locks too.")
    ] = False,
) -> None:
    """Remove locks left by crashed processes."""
    with ctx.open() as st:
        removed = remove_stale(st, all_locks=remove_all)
        left = list_locks(st)
    rows = [
        {
            "id": lk.name,
            "operation": lk.operation,
            "hostname": lk.hostname,
            "pid": lk.pid,
            "exclusive": lk.exclusive,
        }
        for lk in removed
    ]
    if ctx.json:
        emit("summary", {"removed": rows, "remaining": len(left)})
        return
    for r in rows:
        echo(
            f"removed {'exclusive' if r['exclusive'] else 'shared'} lock of {r['operation']} "
            f"(pid {r['pid']} on {r['hostname']})"
        )
    echo(f"{len(removed)} lock(s) removed, {len(left)} remaining")


def register(app: typer.Typer) -> None:
    app.command("unlock")(unlock_cmd)
