"""stats: how big the snapshots are, and what the store really holds.

Figures (store-wide over all snapshots, or for one snapshot):
- ``logical_size``: the sum of the sizes of every file of every snapshot counted (what
  restoring each of them would write);
- ``unique_size``: plaintext bytes of the distinct data blobs they reference;
- ``stored_size``: sealed bytes of those blobs plus their trees (one copy each);
- ``dedup_ratio`` = logical / unique; ``compression_ratio`` = unique plaintext (data and
  tree blobs) / their sealed bytes;
- store-wide also: pack bytes and counts by kind, index objects, and ``unreferenced``:
  sealed bytes in packs that no snapshot uses (what gc could free).

Invariants: read-only, under a shared lock. Each distinct tree is loaded once: its
totals are memoised (three integers per tree), distinct blobs are a set of ids shared
with the index; trees are walked with an explicit stack, so depth is not limited by
Python's recursion limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import IntegrityError
from ..model.tree import DIR, FILE, Tree
from ..store import Store
from ..store.locks import shared_lock


@dataclass
class Stats:
    snapshot: str | None = None  # None: the whole store
    snapshots: int = 0
    files: int = 0
    dirs: int = 0
    logical_size: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    unique_size: int = 0  # plaintext of distinct data blobs
    raw_size: int = 0  # plaintext of distinct data + tree blobs
    stored_size: int = 0  # sealed bytes of distinct data + tree blobs
    missing_blobs: int = 0
    packs: int = 0
    packs_by_kind: dict[str, int] = field(default_factory=dict)
    pack_bytes: int = 0
    index_objects: int = 0
    index_blobs: int = 0
    unreferenced: int = 0

    @property
    def dedup_ratio(self) -> float:
        return self.logical_size / self.unique_size if self.unique_size else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.raw_size / self.stored_size if self.stored_size else 1.0

    def to_map(self) -> dict[str, Any]:
        m = dict(self.__dict__)
        m["dedup_ratio"] = round(self.dedup_ratio, 4)
        m["compression_ratio"] = round(self.compression_ratio, 4)
        return m


class _Walker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.memo: dict[bytes, tuple[int, int, int]] = {}  # tree -> files, dirs, size
        self.blobs: set[bytes] = set()  # distinct data and tree blobs
        self.missing = 0

    def totals(self, root: bytes) -> tuple[int, int, int]:
        pending: dict[bytes, Tree] = {}
        stack: list[tuple[bytes, bool]] = [(root, False)]
        while stack:
            tid, expanded = stack.pop()
            if tid in self.memo or (not expanded and tid in pending):
                continue
            if not expanded:
                tree = Tree.decode(self.store.get_blob(tid))
                pending[tid] = tree
                stack.append((tid, True))
                stack.extend((n.subtree, False) for n in tree.nodes
                             if n.type == DIR and n.subtree is not None)
                continue
            tree = pending.pop(tid)
            files = dirs = size = 0
            for n in tree.nodes:
                if n.type == DIR and n.subtree is not None:
                    f, d, s = self.memo[n.subtree]
                    files, dirs, size = files + f, dirs + d + 1, size + s
                elif n.type == FILE:
                    files, size = files + 1, size + n.size
                    self._add(n.content or ())
            self._add((tid,))
            self.memo[tid] = (files, dirs, size)
        return self.memo[root]

    def _add(self, ids: Any) -> None:
        index = self.store.index
        for b in ids:
            loc = index.get(b)
            if loc is None:
                self.missing += 1
            else:
                self.blobs.add(loc.entry.id)


def stats(store: Store, ref: str | None = None) -> Stats:
    """Store-wide figures, or those of snapshot ``ref`` (an id prefix or ``latest``)."""
    with shared_lock(store, "stats", read_only=True):
        store.load_index()
        snaps = [store.find_snapshot(ref)] if ref else store.snapshots()
        st = Stats(snapshot=snaps[0].id if ref else None, snapshots=len(snaps))
        w = _Walker(store)
        for s in snaps:
            try:
                f, d, size = w.totals(s.tree)
            except IntegrityError as err:
                raise IntegrityError(f"snapshot {s.id[:8]}: {err}") from None
            st.files, st.dirs, st.logical_size = st.files + f, st.dirs + d, st.logical_size + size
        st.missing_blobs = w.missing
        index = store.index
        for b in w.blobs:
            e = index.blobs[b].entry
            st.raw_size += e.raw_length
            st.stored_size += e.length
            if e.kind == "tree":
                st.tree_blobs += 1
            else:
                st.data_blobs += 1
                st.unique_size += e.raw_length
        if ref is None:
            st.packs = len(index.packs)
            for p in index.packs.values():
                st.packs_by_kind[p.kind] = st.packs_by_kind.get(p.kind, 0) + 1
                st.pack_bytes += p.size
            st.index_objects = len(index.objects)
            st.index_blobs = len(index.blobs)
            # dead blobs and duplicate copies (the index resolves a blob to one pack)
            st.unreferenced = sum(
                e.length for p in index.packs.values() for e in p.entries
                if e.id not in w.blobs or index.blobs[e.id].pack != p.name)
        return st
