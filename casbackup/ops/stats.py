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
totals are memoised (three integers per tree: ``treewalk.fold``), distinct blobs are a
set of ids shared with the index; the walk is iterative, so depth is not limited by
Python's recursion limit. A malformed tree ends stats with one line naming the snapshot,
the tree and the node (exit 13).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import IntegrityError, NothingMatched
from ..model.tree import FILE, Tree
from ..store import Store
from ..store.locks import shared_lock
from .snapsel import ANY, SnapshotFilter, resolve
from .treewalk import Totals, fold, tree_totals, uncached


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


class _Blobs:
    """The distinct blobs the walked trees reference, and how many no index knows."""

    def __init__(self, store: Store) -> None:
        self.index = store.index
        self.ids: set[bytes] = set()
        self.missing = 0

    def total(self, tid: bytes, tree: Tree, memo: Mapping[bytes, Totals]) -> Totals:
        """``fold``'s total that also collects the tree's and its files' blobs."""
        self._add((tid,))
        for n in tree.nodes:
            if n.type == FILE:
                self._add(n.content or ())
        return tree_totals(tid, tree, memo)

    def _add(self, ids: Iterable[bytes]) -> None:
        for b in ids:
            loc = self.index.get(b)
            if loc is None:
                self.missing += 1
            else:
                self.ids.add(loc.entry.id)


def stats(store: Store, ref: str | None = None, filt: SnapshotFilter = ANY) -> Stats:
    """Store-wide figures, or those of snapshot ``ref`` (an id prefix or ``latest``);
    the snapshots' figures cover only those FILT accepts (``NothingMatched`` when it
    accepts none of a store's snapshots)."""
    with shared_lock(store, "stats", read_only=True):
        store.load_full_index()  # every pack's entries: the store-wide sums
        if ref:
            snaps = [resolve(store, ref, filt)]
        else:
            every = store.snapshots()
            snaps = [s for s in every if filt.match(s)]
            if filt and every and not snaps:
                raise NothingMatched(f"no snapshot matches {filt.describe()}")
        st = Stats(snapshot=snaps[0].id if ref else None, snapshots=len(snaps))
        w = _Blobs(store)
        memo: dict[bytes, Totals] = {}
        load = uncached(store)
        for s in snaps:
            try:
                f, d, size = fold(load, s.tree, w.total, memo)
            except IntegrityError as err:
                raise IntegrityError(f"snapshot {s.id[:8]}: {err}") from None
            st.files, st.dirs, st.logical_size = st.files + f, st.dirs + d, st.logical_size + size
        st.missing_blobs = w.missing
        index = store.index
        for b in w.ids:
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
                if e.id not in w.ids or index.blobs[e.id].pack != p.name)
        return st
