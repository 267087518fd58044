"""``casbackup snapshots`` (alias ``list backups``) and ``casbackup ls``."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from typing import Annotated

import typer

from ..errors import UsageError
from ..model.tree import DIR, Node
from ..ops.treewalk import walk
from .common import (
    Ctx,
    echo,
    emit_json,
    human_bytes,
    store_command,
)


@store_command
def snapshots_cmd(
    ctx: Ctx,
    host: Annotated[str | None, typer.Option("--host")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
) -> None:
    """List snapshots, oldest first."""
    with ctx.open() as st:
        snaps = [
            s
            for s in st.snapshots()
            if (host is None or s.hostname == host) and (not tag or set(tag) <= set(s.tags))
        ]
    if ctx.json:
        emit_json([s.to_json() for s in snaps])
        return
    echo(f"{'ID':8}  {'Time':19}  {'Host':12}  {'Type':12}  {'Tags':12}  {'Size':>10}  Paths")
    for s in snaps:
        t = datetime.fromtimestamp(s.time).strftime("%Y-%m-%d %H:%M:%S")
        echo(
            f"{s.id[:8]}  {t}  {s.hostname[:12]:12}  {s.type:12}  {','.join(s.tags)[:12]:12}  "
            f"{human_bytes(s.summary.total_size):>10}  {', '.join(s.paths)}"
        )
    echo(f"{len(snaps)} snapshot(s)")


list_app = typer.Typer(help="List things in the store.", no_args_is_help=True)


list_app.command("backups", help="Alias of `snapshots`.")(snapshots_cmd)


def _mode_str(n: Node) -> str:
    kinds = {
        "file": stat.S_IFREG,
        "dir": stat.S_IFDIR,
        "symlink": stat.S_IFLNK,
        "fifo": stat.S_IFIFO,
        "chardev": stat.S_IFCHR,
        "blockdev": stat.S_IFBLK,
        "socket": stat.S_IFSOCK,
    }
    return stat.filemode(kinds[n.type] | n.mode)


@store_command
def ls_cmd(
    ctx: Ctx,
    snapshot: Annotated[str, typer.Argument(help="Snapshot id (prefix) or 'latest'.")],
    path: Annotated[str, typer.Argument(help="Directory inside the snapshot.")] = "/",
    recursive: Annotated[bool, typer.Option("--recursive", "-R")] = False,
    long: Annotated[bool, typer.Option("--long", "-l")] = False,
) -> None:
    """List the files of a snapshot."""
    with ctx.open() as st:
        snap = st.find_snapshot(snapshot)
        tree_id = snap.tree
        parts = [os.fsencode(p) for p in path.strip("/").split("/") if p]
        for i, p in enumerate(parts):
            node = st.load_tree(tree_id).find(p)
            if node is None or node.type != DIR or node.subtree is None:
                raise UsageError(
                    f"{'/' + '/'.join(path.strip('/').split('/')[: i + 1])} is not "
                    f"a directory in snapshot {snap.id[:8]}"
                )
            tree_id = node.subtree
        base = "/" + "/".join(os.fsdecode(p) for p in parts)

        for e in walk(st.load_tree, tree_id, path=os.fsencode(base),
                      descend=lambda e: recursive):
            n, full = e.node, os.fsdecode(e.path)
            if ctx.json:
                emit_json(
                    {
                        "path": full,
                        "type": n.type,
                        "size": n.size,
                        "mode": n.mode,
                        "uid": n.uid,
                        "gid": n.gid,
                        "mtime_ns": n.mtime_ns,
                        "target": os.fsdecode(n.target) if n.target is not None else None,
                    }
                )
            elif long:
                t = datetime.fromtimestamp(n.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
                echo(
                    f"{_mode_str(n)} {n.user or n.uid:>8} {n.group or n.gid:>8} "
                    f"{n.size:>12} {t} {full}"
                    + (f" -> {os.fsdecode(n.target)}" if n.target is not None else "")
                )
            else:
                echo(full)


def register(app: typer.Typer) -> None:
    app.command("snapshots")(snapshots_cmd)
    app.add_typer(list_app, name="list")
    app.command("ls")(ls_cmd)
