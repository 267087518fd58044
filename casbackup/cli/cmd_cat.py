"""``casbackup cat``: debug dumps of config, snapshot, tree, index, pack header, key list."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import UsageError
from ..ids import is_hex_id
from ..ops.snapsel import resolve
from ..store import keyring
from . import output
from .common import StoreArgs, store_options
from .output import emit, snapshot_fields

KINDS = ("config", "snapshot", "tree", "index", "pack", "keys")


@store_options()
def cat_cmd(
    kind: Annotated[str, typer.Argument(help=" | ".join(KINDS))],
    obj_id: Annotated[
        str | None, typer.Argument(help="Object or blob id (snapshot: prefix)")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Accepted; output is always JSON.")
    ] = True,
    *,
    so: StoreArgs,
) -> None:
    """Print an internal object as JSON (for debugging)."""
    output.JSON = True  # output is always JSON (an ``object`` line), errors too
    if kind not in KINDS:
        raise UsageError(f"cat: unknown kind {kind!r} (choose {', '.join(KINDS)})")
    if kind not in ("config", "keys") and not obj_id:
        raise UsageError(f"cat {kind} needs an id")
    with so.ctx(json_out=True).open() as st:
        out: Any
        if kind == "config":
            c = st.config
            out = {
                "format_version": c.format_version,
                "store_id": c.store_id,
                "encryption": c.encryption,
                "hash": c.hash,
                "compression": c.compression,
                "compression_level": c.compression_level,
                "pack_size": c.pack_size,
                "chunker": {
                    "algorithm": c.chunker.algorithm,
                    "min_size": c.chunker.min_size,
                    "avg_size": c.chunker.avg_size,
                    "max_size": c.chunker.max_size,
                },
            }
        elif kind == "keys":
            out = [{"id": k, **keyring.describe_key(st, k)} for k in keyring.key_names(st)]
        elif kind == "snapshot":
            out = snapshot_fields(resolve(st, obj_id or ""))
        elif kind == "tree":
            ref = obj_id or ""
            tid = resolve(st, ref).tree if not is_hex_id(ref) else bytes.fromhex(ref)
            out = {"id": tid.hex(), "nodes": [n.to_map() for n in st.load_tree(tid).nodes]}
        elif kind == "index":
            packs, sup = st.index_object(obj_id or "")
            out = {
                "supersedes": sup,
                "packs": [
                    {
                        "id": p.name,
                        "kind": p.kind,
                        "size": p.size,
                        "blobs": [
                            {
                                "id": e.id,
                                "offset": e.offset,
                                "length": e.length,
                                "raw_length": e.raw_length,
                            }
                            for e in p.entries
                        ],
                    }
                    for p in packs
                ],
            }
        else:
            out = [
                {
                    "kind": e.kind,
                    "id": e.id,
                    "offset": e.offset,
                    "length": e.length,
                    "raw_length": e.raw_length,
                }
                for e in st.pack_entries(obj_id or "")
            ]
    emit("object", {"kind": kind, "id": obj_id, "object": out})


def register(app: typer.Typer) -> None:
    app.command("cat")(cat_cmd)
