"""diff: what changed between two snapshots.

Each change is one of:
- ``added`` / ``removed``: the path exists only in the second / first snapshot (every
  entry below an added or removed directory is listed too);
- ``modified``: the content changed (file content list, symlink target, device number)
  or the type of the entry changed;
- ``metadata``: same content, but mode, owner (ids or names), mtime or xattrs differ.
  A directory whose entries changed is not reported for its own mtime.

Invariants: read-only, under a shared lock; the walk is the one tree walker's
(``treewalk.walk_pair`` for both trees together in name order, ``treewalk.walk`` below
added or removed directories; iterative, so depth is unlimited). A subtree whose id is
equal on both sides is skipped without being loaded, so diffing two snapshots of a large,
mostly unchanged tree costs only the changed paths. Paths are ``/``-joined, names decoded
with ``os.fsdecode`` (undecodable bytes survive as surrogate escapes). Changes come out
sorted by path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..model.snapshot import Snapshot
from ..model.tree import DIR, FILE, Node
from ..store import Store
from ..store.locks import shared_lock
from .snapsel import ANY, SnapshotFilter, resolve
from .treewalk import uncached, walk, walk_pair

ADDED, REMOVED, MODIFIED, METADATA = "added", "removed", "modified", "metadata"
_META = ("mode", "uid", "gid", "user", "group", "mtime_ns", "xattrs")
_DIR_META = ("mode", "uid", "gid", "user", "group", "xattrs")


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    change: str
    type: str
    size: int = 0  # of the new entry (the old one for removed)


@dataclass
class DiffResult:
    a: Snapshot
    b: Snapshot
    changes: list[Change] = field(default_factory=list)
    trees_skipped: int = 0  # identical subtrees not walked

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    def summary(self) -> dict[str, int]:
        files = [c for c in self.changes if c.type == FILE]
        return {
            ADDED: self.count(ADDED), REMOVED: self.count(REMOVED),
            MODIFIED: self.count(MODIFIED), METADATA: self.count(METADATA),
            "bytes_added": sum(c.size for c in files if c.change == ADDED),
            "bytes_removed": sum(c.size for c in files if c.change == REMOVED),
            "trees_skipped": self.trees_skipped,
        }


def diff(store: Store, ref_a: str, ref_b: str, filt: SnapshotFilter = ANY) -> DiffResult:
    with shared_lock(store, "diff", read_only=True):
        store.load_index()
        res = DiffResult(resolve(store, ref_a, filt), resolve(store, ref_b, filt))
        _Differ(store, res).trees(res.a.tree, res.b.tree)
        res.changes.sort(key=lambda c: c.path)
        return res


class _Differ:
    def __init__(self, store: Store, res: DiffResult) -> None:
        self.store = store
        self.res = res
        self.load = uncached(store)

    def trees(self, ta: bytes, tb: bytes) -> None:
        if ta == tb:
            self.res.trees_skipped += 1
            return
        for p in walk_pair(self.load, ta, tb):
            if p.b is None and p.a is not None:
                self._all(p.a, p.path, REMOVED)
            elif p.a is None and p.b is not None:
                self._all(p.b, p.path, ADDED)
            elif p.a is not None and p.b is not None:
                self._node(p.a, p.b, p.path)

    def _node(self, a: Node, b: Node, bpath: bytes) -> None:
        """Record the change of one entry present on both sides (the walker descends
        into two directories whose subtrees differ)."""
        add = self.res.changes.append
        path = os.fsdecode(bpath)
        if a.type != b.type:
            add(Change(path, MODIFIED, b.type, b.size))
            if a.type == DIR:  # the old directory's entries are gone
                self._below(a, bpath, REMOVED)
            if b.type == DIR:
                self._below(b, bpath, ADDED)
            return
        if a.type == DIR:
            if any(getattr(a, f) != getattr(b, f) for f in _DIR_META) or (
                    a.subtree == b.subtree and a.mtime_ns != b.mtime_ns):
                add(Change(path, METADATA, DIR))
            if a.subtree == b.subtree:
                self.res.trees_skipped += 1
            return
        if (a.content, a.target, a.rdev, a.size) != (b.content, b.target, b.rdev, b.size):
            add(Change(path, MODIFIED, b.type, b.size))
        elif any(getattr(a, f) != getattr(b, f) for f in _META):
            add(Change(path, METADATA, b.type, b.size))

    def _all(self, n: Node, path: bytes, change: str) -> None:
        self.res.changes.append(Change(os.fsdecode(path), change, n.type, n.size))
        if n.type == DIR:
            self._below(n, path, change)

    def _below(self, n: Node, path: bytes, change: str) -> None:
        if n.subtree is None:
            return
        for e in walk(self.load, n.subtree, path=path):
            self.res.changes.append(Change(os.fsdecode(e.path), change, e.node.type, e.node.size))
