"""``casbackup init``: create a store."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UsageError
from ..ops.sync import paired_key
from ..store import ENCRYPTIONS, init_store
from .common import (
    Ctx,
    echo,
    read_password,
    store_command,
)
from .output import emit
from .peer import FromPasswordCmdOpt, FromPasswordFileOpt, open_peer, peer_password


@store_command
def init(
    ctx: Ctx,
    encryption: Annotated[str, typer.Option(
        "--encryption", help=f"One of {', '.join(ENCRYPTIONS)} (no short flag: -e is "
        "--exclude elsewhere, as in restic).")] = "repokey",
    pack_size_mib: Annotated[int, typer.Option("--pack-size", help="Target pack size, MiB.")] = 16,
    compression_level: Annotated[int, typer.Option(
        "--compression-level", metavar="LEVEL", help="zstd level, 1 (fast) to 22.")] = 3,
    from_url: Annotated[str | None, typer.Option(
        "--from", help="Pair with this store (same id key and chunker) so `sync` can copy "
                       "between them without re-chunking.")] = None,
    from_password_file: FromPasswordFileOpt = None,
    from_password_command: FromPasswordCmdOpt = None,
    copy_master_key: Annotated[bool, typer.Option(
        "--copy-master-key", help="With --from: reuse the source's whole master key "
                                  "(else a new encryption key).")] = False,
) -> None:
    """Create a new store (encrypted with a passphrase unless --encryption none)."""
    master, chunker = None, None
    if from_url:
        pw_src = peer_password(from_password_file, from_password_command,
                               ctx.password_file, ctx.password_command)
        with open_peer(from_url, pw_src, "source store", ctx.cache) as src:
            master, chunker = paired_key(src, copy_master_key)
    elif copy_master_key:
        raise UsageError("--copy-master-key needs --from SRC")
    pw = None
    if encryption != "none":
        pw = read_password(ctx.password_file, ctx.password_command, confirm=True)
    with init_store(ctx.url, pw, encryption=encryption, pack_size=pack_size_mib << 20,
                    compression_level=compression_level, master=master,
                    chunker=chunker) as st:
        if ctx.json:
            emit("initialized", {"id": st.config.store_id, "repository": ctx.url,
                       "encryption": st.config.encryption, "paired_with": from_url})
        else:
            echo(f"created store {st.config.store_id[:8]} at {ctx.url} "
                 f"(encryption: {st.config.encryption})")
            if from_url:
                echo(f"paired with {from_url}: `casbackup sync` copies between them")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
