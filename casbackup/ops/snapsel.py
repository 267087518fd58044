"""Naming snapshots and paths in them: ``SNAP[:PATH]``, ``latest``, id prefixes, filters.

- ``split_ref("latest:/home/me")`` is ``("latest", "/home/me")`` (restic's syntax): a
  snapshot reference never holds a ``:`` itself (it is ``latest`` or hex digits).
- ``Filters`` narrow snapshots as restic's ``--host``, ``--tag`` and ``--path`` do: the
  host is equal; each ``--tag`` value is a comma-separated set and a snapshot matches when
  it carries every tag of at least one of the sets; every ``--path`` is one of its paths.
- ``resolve(store, ref, filters)``: ``latest`` is the newest snapshot the filters accept;
  an id prefix names one snapshot, which must also pass the filters.
- ``locate(load, snap, path)`` finds a path in a snapshot's trees (``/`` is its root).

Invariants: lookups only read trees through ``load`` (validated trees: a name is one safe
path component), so a located path is ``/``-joined safe names. A path that is not in the
snapshot is a ``UsageError`` (exit 2) naming the path and the snapshot; no snapshot for
a reference is ``SnapshotNotFound`` (exit 2).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import SnapshotNotFound, UsageError
from ..model.fields import show
from ..model.snapshot import Snapshot
from ..model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node, Tree
from ..store import Store

Loader = Callable[[bytes], Tree]
_S_IFMT = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, FIFO: stat.S_IFIFO,
           CHARDEV: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, SOCKET: stat.S_IFSOCK}


def st_mode(n: Node) -> int:
    """The node's ``st_mode``: its file type bits and its permission bits."""
    return _S_IFMT[n.type] | n.mode


def split_ref(ref: str) -> tuple[str, str | None]:
    """``SNAP[:PATH]`` as (SNAP, PATH or None)."""
    snap, sep, path = ref.partition(":")
    return (snap, path or "/") if sep else (ref, None)


def tag_sets(values: Iterable[str]) -> tuple[frozenset[str], ...]:
    """``--tag a,b --tag c`` as ({a, b}, {c}): a snapshot needs all of one set."""
    sets = (frozenset(t.strip() for t in v.split(",") if t.strip()) for v in values)
    return tuple(s for s in sets if s)


@dataclass(frozen=True, slots=True)
class Filters:
    host: str | None = None
    tags: tuple[frozenset[str], ...] = ()
    paths: tuple[str, ...] = ()

    def accept(self, s: Snapshot) -> bool:
        return ((self.host is None or s.hostname == self.host)
                and (not self.tags or any(t <= set(s.tags) for t in self.tags))
                and set(self.paths) <= set(s.paths))

    def __bool__(self) -> bool:
        return self.host is not None or bool(self.tags) or bool(self.paths)

    def describe(self) -> str:
        parts = [f"--host {self.host}"] if self.host is not None else []
        parts += [f"--tag {','.join(sorted(t))}" for t in self.tags]
        parts += [f"--path {p}" for p in self.paths]
        return " ".join(parts)


def resolve(st: Store, ref: str, filters: Filters | None = None) -> Snapshot:
    """The one snapshot ``ref`` (``latest`` or an id prefix) names among those FILTERS
    accept."""
    filters = filters or Filters()
    if ref == "latest":
        cands = [s for s in st.snapshots() if filters.accept(s)]
        if not cands:
            what = f" matches {filters.describe()}" if filters else " is in the store"
            raise SnapshotNotFound(f"no snapshot{what}, so there is no latest")
        return cands[-1]
    snap = st.load_snapshot(st.snapshot_name(ref))
    if not filters.accept(snap):
        raise SnapshotNotFound(f"snapshot {snap.id[:8]} does not match {filters.describe()}")
    return snap


def select(st: Store, refs: list[str], filters: Filters) -> list[tuple[Snapshot, str | None]]:
    """Every snapshot FILTERS accept, oldest first, when REFS is empty; else the snapshot
    each ``SNAP[:PATH]`` of REFS names, with its PATH (each snapshot once per path)."""
    if not refs:
        return [(s, None) for s in st.snapshots() if filters.accept(s)]
    out: dict[tuple[str, str | None], tuple[Snapshot, str | None]] = {}
    for r in refs:
        ref, path = split_ref(r)
        s = resolve(st, ref, filters)
        out.setdefault((s.id, path), (s, path))
    return list(out.values())


def join_paths(base: str | None, path: str) -> str:
    """PATH inside BASE (a ``SNAP:BASE`` reference's path), as one absolute path."""
    return "/" + "/".join(p for p in f"{base or ''}/{path}".split("/") if p and p != ".")


@dataclass(frozen=True, slots=True)
class Located:
    path: bytes  # b"/" for the root, else b"/a/b"
    node: Node | None  # None for the snapshot's root directory
    tree: bytes | None  # the directory's tree id (the root's, or the node's subtree)

    @property
    def is_dir(self) -> bool:
        return self.tree is not None


def locate(load: Loader, snap: Snapshot, path: str) -> Located:
    """The entry at PATH (absolute, ``/``-separated) in SNAP; ``UsageError`` if none."""
    parts = [os.fsencode(p) for p in path.split("/") if p and p != "."]
    tree: bytes | None = snap.tree
    node: Node | None = None
    full = b"/" + b"/".join(parts)
    for i, name in enumerate(parts):
        where = b"/" + b"/".join(parts[:i])
        if tree is None:
            assert node is not None
            raise UsageError(f"{show(full, 200)} is not in snapshot {snap.id[:8]} "
                             f"({show(where, 200)} is a {node.type})")
        found = load(tree).find(name)
        if found is None:
            where += (b"/" if i else b"") + name
            why = "" if where == full else f" (it has no {show(where, 200)})"
            raise UsageError(f"{show(full, 200)} is not in snapshot {snap.id[:8]}{why}")
        node = found
        tree = found.subtree if found.type == DIR else None
    return Located(b"/" + b"/".join(parts), node, tree)
