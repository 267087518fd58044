"""restore's plan: the snapshot's entries in tree order, checked before anything is written.

Invariants:
- The walk is iterative (an explicit stack): any depth of directories is planned, and
  every entry's parent comes before it (``Item.parent`` is its index, ``ROOT`` for the top).
- Every node restore reads is checked as restore will use it; anything else is refused
  with ``IntegrityError`` naming the tree and path, before the target is touched: a name
  that is not bytes, empty, ``.``/``..`` or holds ``/`` or NUL; names not strictly sorted
  (a duplicate name would let a later entry, say a symlink, stand where an earlier one was
  created); an unknown type; a mode, owner, time, size or device number out of range;
  content that is not a list of 32-byte ids; a subtree that is not a 32-byte id; a symlink
  target that is empty or holds NUL; xattrs that are not pairs of byte strings; hard-link
  groups (same device and inode) whose members disagree about their content.
- Include/exclude matching costs one match per entry at any depth (an entry is selected
  when it or an ancestor matches: the ancestors' answers are reused, not recomputed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError
from ..model.tree import DIR, FILE, SYMLINK, TYPES, Node
from ..store import Store
from .restore_fs import ROOT, show

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

_ID_LEN = 32
_U64 = 1 << 64
_I64 = 1 << 63
_OWNER = (1 << 32) - 1  # uid/gid 2^32-1 means "unchanged" to chown: not an owner


@dataclass(slots=True)
class Item:
    parts: tuple[bytes, ...]  # path components below the target
    node: Node
    parent: int = ROOT  # index of the directory item holding this one
    link_to: int | None = None  # index of the item this one is a hard link of


def _int(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v < hi


_RANGES = (("mode", 0, 0o10000), ("uid", 0, _OWNER), ("gid", 0, _OWNER),
           ("mtime_ns", -_I64, _I64), ("size", 0, _I64), ("nlink", 0, _U64),
           ("inode", 0, _U64), ("device", 0, _U64))


def _bad_field(n: Node) -> str | None:
    """What is wrong with node N's fields restore relies on, or None."""
    if n.type not in TYPES:
        return "an unknown type"
    mode, uid, gid, mtime, size = n.mode, n.uid, n.gid, n.mtime_ns, n.size
    # the usual case in one expression (a restore checks every node); then which field
    if not (type(mode) is int and type(uid) is int and type(gid) is int
            and type(mtime) is int and type(size) is int and type(n.nlink) is int
            and type(n.inode) is int and type(n.device) is int
            and 0 <= mode < 0o10000 and 0 <= uid < _OWNER and 0 <= gid < _OWNER
            and -_I64 <= mtime < _I64 and 0 <= size < _I64 and 0 <= n.nlink < _U64
            and 0 <= n.inode < _U64 and 0 <= n.device < _U64):
        for f, lo, hi in _RANGES:
            if not _int(getattr(n, f), lo, hi):
                return f"a bad {f}"
    if n.rdev is not None and not _int(n.rdev, 0, _U64):
        return "a bad rdev"
    if n.content is not None:
        if type(n.content) is not list:
            return "bad content ids"
        for b in n.content:
            if type(b) is not bytes or len(b) != _ID_LEN:
                return "bad content ids"
    if n.subtree is not None and not (type(n.subtree) is bytes and len(n.subtree) == _ID_LEN):
        return "a bad subtree id"
    if n.type == SYMLINK and not (type(n.target) is bytes and n.target
                                  and b"\0" not in n.target):
        return "a bad symlink target"
    if n.xattrs is not None and not all(
        type(k) is bytes and k and b"\0" not in k and type(v) is bytes
        for k, v in n.xattrs.items()
    ):
        return "bad xattrs"
    return None


def _nodes(store: Store, tree_id: bytes, where: str) -> list[Node]:
    """The nodes of a tree, each a map and with a well-formed, sorted, unique name."""
    try:
        maps = store.load_tree_maps(tree_id)  # the store's strict decoder checks first
    except IntegrityError as e:
        raise IntegrityError(f"{e} (at {where})") from None
    nodes: list[Node] = []
    prev = b""
    for m in maps:
        if not isinstance(m, dict):
            raise IntegrityError(
                f"tree {tree_id.hex()[:16]} ({where}) has a node that is not a map")
        try:
            n = Node.from_map(m)
        except IntegrityError as e:
            raise IntegrityError(f"tree {tree_id.hex()[:16]} ({where}): {e}") from None
        name = n.name
        if type(name) is not bytes or name in (b"", b".", b"..") or b"/" in name \
                or b"\0" in name:
            shown = f'"{show(name)}"' if type(name) is bytes else "(not bytes)"
            raise IntegrityError(f"tree {tree_id.hex()[:16]} ({where}) has an unsafe name {shown}")
        if nodes and name <= prev:
            raise IntegrityError(
                f"tree {tree_id.hex()[:16]} ({where}) has "
                f"{'a duplicate' if name == prev else 'an unsorted'} name \"{show(name)}\"")
        prev = name
        nodes.append(n)
    return nodes


def walk(store: Store, tree_id: bytes) -> list[Item]:
    """Every entry below ``tree_id`` in tree order (depth first), each node checked."""
    out: list[Item] = []
    # frames: (the tree's nodes not yet visited, its path, its directory's item index)
    stack: list[tuple[Iterator[Node], tuple[bytes, ...], int, bytes]] = [
        (iter(_nodes(store, tree_id, "/")), (), ROOT, tree_id)]
    while stack:
        nodes, parts, parent, tid = stack[-1]
        n = next(nodes, None)
        if n is None:
            stack.pop()
            continue
        p = (*parts, n.name)
        bad = _bad_field(n)
        if bad is not None:
            raise IntegrityError(f"tree {tid.hex()[:16]}: /{show(b'/'.join(p))} has {bad}")
        out.append(Item(p, n, parent))
        if n.type == DIR and n.subtree is not None:
            where = "/" + show(b"/".join(p))
            stack.append((iter(_nodes(store, n.subtree, where)), p, len(out) - 1, n.subtree))
    return out


def check_links(items: list[Item]) -> None:
    """Refuse hard-link groups whose members disagree on what the one inode holds."""
    first: dict[tuple[int, int], Item] = {}
    for it in items:
        n = it.node
        if n.type != FILE or n.nlink <= 1:
            continue
        f = first.setdefault((n.device, n.inode), it)
        if f is not it and (f.node.size, f.node.content) != (n.size, n.content):
            raise IntegrityError(
                f"hard links /{show(b'/'.join(f.parts))} and /{show(b'/'.join(it.parts))} "
                "of one inode disagree about its content")


def link_plan(items: list[Item]) -> None:
    """Mark every file that is a hard link of an earlier one (same device and inode,
    nlink > 1) with ``link_to``; it is then linked, not written."""
    first: dict[tuple[int, int], int] = {}
    for i, it in enumerate(items):
        n = it.node
        if n.type == FILE and n.nlink > 1:
            key = (n.device, n.inode)
            if key in first:
                it.link_to = first[key]
            else:
                first[key] = i


def _matcher(patterns: Iterable[str]) -> GitIgnoreSpec | None:
    pats = [p for p in patterns if p.strip()]
    if not pats:
        return None
    import pathspec  # only when patterns are given: ~20 ms of startup otherwise

    return pathspec.GitIgnoreSpec.from_lines(pats)


def select(items: list[Item], include: list[str], exclude: list[str]) -> list[Item]:
    """The items a restore with these patterns writes (with the directories leading to
    them), in tree order with ``parent`` renumbered."""
    inc, exc = _matcher(include), _matcher(exclude)
    if inc is None and exc is None:
        return items

    def text(it: Item) -> str:
        return "/" + os.fsdecode(b"/".join(it.parts)) + ("/" if it.node.type == DIR else "")

    def hits(spec: GitIgnoreSpec | None) -> list[bool]:
        # a path matches when it or any of its ancestors does (parents come first)
        out: list[bool] = []
        for it in items:
            up = it.parent != ROOT and out[it.parent]
            out.append(up or (spec is not None and spec.match_file(text(it))))
        return out

    inc_hit, exc_hit = hits(inc), hits(exc)
    keep = [False] * len(items)
    for i in range(len(items)):
        if exc_hit[i] or not (inc is None or inc_hit[i]):
            continue
        j = i
        while j != ROOT and not keep[j]:
            keep[j] = True  # it and the directories leading to it
            j = items[j].parent
    new: dict[int, int] = {ROOT: ROOT}
    out: list[Item] = []
    for i, it in enumerate(items):
        if keep[i]:
            new[i] = len(out)
            it.parent = new[it.parent]
            out.append(it)
    return out
