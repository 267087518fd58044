"""``casbackup restore``: recreate a snapshot's files."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops.restore import restore
from .common import (
    Ctx,
    JsonOpt,
    PasswordCmdOpt,
    PasswordFileOpt,
    StoreOpt,
    echo,
    emit_json,
    human_bytes,
    warn,
)
from .progress import CliObserver


def restore_cmd(
    snapshot: Annotated[str, typer.Argument(help="Snapshot id (prefix) or 'latest'.")],
    target: Annotated[str, typer.Argument(help="Directory to restore into.")],
    store: StoreOpt = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", "-i", help="Restore only paths matching (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-e", help="Leave out paths matching (repeatable)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Allow a non-empty target.")
    ] = False,
    verify_: Annotated[bool, typer.Option("--verify", help="Re-hash what was written.")] = False,
    password_file: PasswordFileOpt = None,
    password_command: PasswordCmdOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore SNAPSHOT into TARGET."""
    ctx = Ctx(store, password_file, password_command, json_out)
    obs = CliObserver(json_lines=json_out)
    with ctx.open() as st:
        res = restore(
            st,
            snapshot,
            target,
            include=include,
            exclude=exclude,
            overwrite=overwrite,
            verify=verify_,
            observer=obs,
        )
    if json_out:
        emit_json(
            {
                "type": "summary",
                "snapshot_id": res.snapshot.id,
                "files": res.files,
                "dirs": res.dirs,
                "bytes_written": res.bytes_written,
                "warnings": res.warnings,
                "verified": verify_,
            }
        )
    else:
        for w in res.warnings:
            warn(w)
        echo(
            f"restored snapshot {res.snapshot.id[:8]}: {res.files} files, {res.dirs} "
            f"directories, {human_bytes(res.bytes_written)}"
            f"{' (verified)' if verify_ else ''}"
        )


def register(app: typer.Typer) -> None:
    app.command("restore")(restore_cmd)
