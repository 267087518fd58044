"""``casbackup unlock``: remove stale locks (or all with --remove-all)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..store.locks import list_locks, remove_stale
from .common import Ctx, JsonOpt, PasswordCmdOpt, PasswordFileOpt, StoreOpt, echo, emit_json


def unlock_cmd(
    store: StoreOpt = None,
    remove_all: Annotated[
        bool, typer.Option("--remove-all", help="Remove live locks too.")
    ] = False,
    password_file: PasswordFileOpt = None,
    password_command: PasswordCmdOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove locks left by crashed processes."""
    ctx = Ctx(store, password_file, password_command, json_out)
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
    if json_out:
        emit_json({"removed": rows, "remaining": len(left)})
        return
    for r in rows:
        echo(
            f"removed {'exclusive' if r['exclusive'] else 'shared'} lock of {r['operation']} "
            f"(pid {r['pid']} on {r['hostname']})"
        )
    echo(f"{len(removed)} lock(s) removed, {len(left)} remaining")


def register(app: typer.Typer) -> None:
    app.command("unlock")(unlock_cmd)
