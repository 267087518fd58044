"""``casbackup snapshots`` (alias ``list backups``) and ``casbackup ls``."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer

from ..errors import NothingMatched, UsageError
from ..model.snapshot import Snapshot
from ..model.tree import DIR, Node
from ..ops.groupkey import GroupKey
from ..ops.snapsel import SnapshotFilter, group_snapshots, parse_group_by, resolve
from ..ops.strip import check_strip, strip_components
from ..ops.treewalk import walk
from ..store import OBJECT_KINDS
from .common import (
    Ctx,
    echo,
    human_bytes,
    store_command,
    warn,
)
from .filteropts import PathFilterOpt, TagFilterOpt, snapshot_filter_options
from .output import emit, node_fields, snapshot_fields
from .stripopt import StripOpt


@store_command
def snapshots_cmd(
    ctx: Ctx,
    host: Annotated[list[str] | None, typer.Option(
        "--host", "-H", metavar="HOST", help="Only snapshots of this host (repeatable).")
    ] = None,
    tag: TagFilterOpt = None,
    path: PathFilterOpt = None,
    latest: Annotated[int | None, typer.Option(
        "--latest", metavar="N", min=1,
        help="Only the N newest snapshots of each group (default groups: host,paths).")
    ] = None,
    group_by: Annotated[str, typer.Option(
        "--group-by", "-g", metavar="FIELD[,FIELD…]",
        help="Group by any of host,paths,tags (JSON: one object per group).")] = "",
    compact: Annotated[bool, typer.Option(
        "--compact", "-c", help="Only the id, time, host and tags columns.")] = False,
) -> None:
    """List snapshots, oldest first. A --host/--tag/--path filter that matches none of the
    store's snapshots exits 4 (nothing matched)."""
    select = SnapshotFilter.of(host, tag, path)
    fields = parse_group_by(group_by)
    with ctx.open() as st:
        every = st.snapshots()
    snaps = [s for s in every if select.match(s)]
    if select.active() and every and not snaps:
        raise NothingMatched(f"no snapshot matches {select.describe()}")
    for miss in select.unmatched(snaps if snaps else every):
        warn(f"{miss} matched no snapshot")
    groups = group_snapshots(snaps, fields or ("host", "paths") if latest else fields)
    if latest is not None:
        groups = {k: v[-latest:] for k, v in groups.items()}
    if not fields:  # --latest alone: one list, still oldest first
        groups = {GroupKey(): sorted((s for v in groups.values() for s in v),
                                     key=lambda s: (s.time, s.id))}
    if ctx.json:  # one ``snapshot`` line each (with --group-by: and its group_key)
        for k, v in groups.items():
            gkey = ({"group_key": {"hostname": k.hostname, "paths": _opt(k.paths),
                                  "tags": _opt(k.tags)}} if fields else {})
            for s in v:
                emit("snapshot", {**snapshot_fields(s), **gkey})
        return
    for key, group in groups.items():
        if fields:
            echo(f"snapshots for {_describe(key)}:")
        _table(group, compact)
        if fields:
            echo()
    echo(f"{sum(len(v) for v in groups.values())} snapshot(s)")


def _opt(t: tuple[str, ...] | None) -> list[str] | None:
    return list(t) if t is not None else None


def _describe(key: GroupKey) -> str:
    parts = [f"host {key.hostname}" if key.hostname is not None else "",
             f"paths {', '.join(key.paths)}" if key.paths is not None else "",
             f"tags {','.join(key.tags) or '-'}" if key.tags is not None else ""]
    return "; ".join(p for p in parts if p)


def _table(snaps: list[Snapshot], compact: bool) -> None:
    """Columns as wide as their widest cell: nothing is cut."""
    head = ["ID", "Time", "Host", "Tags"] if compact else [
        "ID", "Time", "Host", "Type", "Tags", "Size", "Paths"]
    rows = []
    for s in snaps:
        t = datetime.fromtimestamp(s.time).strftime("%Y-%m-%d %H:%M:%S")
        cells = [s.id[:8], t, s.hostname, ",".join(s.tags)]
        if not compact:
            cells[3:3] = [s.type]
            cells += [human_bytes(s.summary.total_size), ", ".join(s.paths)]
        rows.append(cells)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        line = "  ".join(c.rjust(w) if h == "Size" else c.ljust(w)
                         for c, w, h in zip(r, widths, head, strict=True))
        echo(line.rstrip())


list_app = typer.Typer(help="List things in the store.", no_args_is_help=True)


list_app.command("backups", help="Alias of `snapshots`.")(snapshots_cmd)


def _list_names(kind: str) -> Callable[..., None]:
    @store_command
    def list_kind(ctx: Ctx) -> None:
        with ctx.open() as st:
            for name in st.object_names(kind):
                if ctx.json:
                    emit("name", {"kind": kind, "id": name})
                else:
                    echo(name)

    list_kind.__doc__ = f"The name of every object under {kind}/, one a line (restic's list)."
    return list_kind


for _kind in OBJECT_KINDS:
    list_app.command(_kind)(_list_names(_kind))


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
@snapshot_filter_options
def ls_cmd(
    ctx: Ctx,
    snapshot: Annotated[str, typer.Argument(help="Snapshot id (prefix) or 'latest'.")],
    path: Annotated[str, typer.Argument(help="Directory inside the snapshot.")] = "/",
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-R", help="List the subdirectories too.")] = False,
    long: Annotated[bool, typer.Option(
        "--long", "-l", help="Mode, owner, size and time too.")] = False,
    strip: StripOpt = 0,
    *,
    filt: SnapshotFilter,
) -> None:
    """List the files of a snapshot."""
    check_strip(strip)
    with ctx.open() as st:
        snap = resolve(st, snapshot, filt)
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
        if ctx.json:
            emit("snapshot", snapshot_fields(snap))

        for e in walk(st.load_tree, tree_id, path=os.fsencode(base),
                      descend=lambda e: recursive):
            shown_path = strip_components(e.path, strip)
            if shown_path is None:
                continue  # shallower than --strip-components
            n, full = e.node, os.fsdecode(shown_path)
            if ctx.json:
                emit("node", node_fields(n, shown_path))
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
