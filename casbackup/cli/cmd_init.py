"""``casbackup init``: create a store."""

from __future__ import annotations

from typing import Annotated

import typer

from ..store import ENCRYPTIONS, init_store
from .common import (
    Ctx,
    JsonOpt,
    PasswordCmdOpt,
    PasswordFileOpt,
    StoreOpt,
    echo,
    emit_json,
    read_password,
)


def init(
    store: StoreOpt = None,
    encryption: Annotated[str, typer.Option(
        "--encryption", "-e", help=f"One of {', '.join(ENCRYPTIONS)}.")] = "repokey",
    pack_size_mib: Annotated[int, typer.Option("--pack-size", help="Target pack size, MiB.")] = 16,
    compression_level: Annotated[int, typer.Option("--compression-level")] = 3,
    password_file: PasswordFileOpt = None,
    password_command: PasswordCmdOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a new store (encrypted with a passphrase unless --encryption none)."""
    ctx = Ctx(store, password_file, password_command, json_out)
    pw = None
    if encryption != "none":
        pw = read_password(password_file, password_command, confirm=True)
    with init_store(ctx.url, pw, encryption=encryption, pack_size=pack_size_mib << 20,
                    compression_level=compression_level) as st:
        if json_out:
            emit_json({"store_id": st.config.store_id, "url": ctx.url,
                       "encryption": st.config.encryption})
        else:
            echo(f"created store {st.config.store_id[:8]} at {ctx.url} "
                 f"(encryption: {st.config.encryption})")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
