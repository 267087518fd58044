"""gc's sets of blobs and packs, over the read-only index view (``IndexView``): what is
indexed, condemned, live and surviving, at one byte per index record, not a Python
object per blob (issue #12: gc and verify at <= 32 B per blob).

Three views of where a blob is for gc (DESIGN §8: records condemn packs):

- *full*: every indexed pack and every pack a gc record condemned (mark resolves trees
  through it, and a blob in none of it is *missing*);
- *clean*: the indexed packs no record condemned, then those resurrected this run (the
  plan runs over it; a blob is live in the pack clean resolves it to);
- *survive*: clean less what this run condemns or drops, plus its new packs and what
  phase 2 resurrects (the consolidated index names exactly it).

Representation: the table's packs carry a bool per ordinal for each view; the table's
records a live bit and a seen-tree bit, set at the position *clean* resolves the id to
(``IndexView.resolve`` with the condemned packs excluded), so that a pack's live bytes
are a vectorised sum of its records' bits. What the table does not hold (packs of gc
records, of index objects written since the table was built, resurrected and new
packs) is an overlay of Python objects: it grows with what was condemned or written
meanwhile, never with the store.

Invariants: an id is live iff its clean position's bit is set or it is in
``live_extra`` (never both: the clean view of the table is fixed when this is built);
overlays keep the first copy added (like ``Index``: any copy is a correct one).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..store import PackColumns, PackEntry, PackInfo
from .capabilities import IndexView

if TYPE_CHECKING:
    import numpy as np

    Array = np.ndarray[Any, Any]
else:
    Array = Any


def _np() -> Any:
    import numpy

    return numpy


class _Overlay:
    """Packs outside the table (or taken into a view later), first copy of an id wins."""

    def __init__(self) -> None:
        self.packs: dict[str, PackInfo] = {}
        self.ids: dict[bytes, tuple[str, PackEntry]] = {}

    def add(self, p: PackInfo) -> bool:
        if p.name in self.packs:
            return False
        self.packs[p.name] = p
        for e in p.entries:
            self.ids.setdefault(e.id, (p.name, e))
        return True


class BlobSets:
    """See the module docstring. ``condemned``: every pack a gc record names now."""

    def __init__(self, table: IndexView, condemned: Iterable[str],
                 records: Iterable[PackInfo]) -> None:
        np = _np()
        self.t = table
        self.cond: Array = table.mask(condemned)  # excluded from the clean view
        self.full_extra = _Overlay()  # condemned packs' entries, index objects since
        for p in records:
            if table.pack_no(p.name) is None:
                self.full_extra.add(p)
        self.clean_extra = _Overlay()  # resurrected before the plan
        self.live: Array = np.zeros(table.n, bool)
        self.trees: Array = np.zeros(table.n, bool)
        self.live_extra: set[bytes] = set()
        self.tree_extra: set[bytes] = set()

    def nbytes(self) -> int:
        """Resident bytes of the per-record and per-pack arrays (the memory test)."""
        return int(self.live.nbytes + self.trees.nbytes + self.cond.nbytes) + self.t.nbytes()

    # ----- full ---------------------------------------------------------------------

    def full_get(self, blob: bytes) -> tuple[str, PackEntry] | None:
        pos = int(self.t.resolve([blob])[0])
        if pos >= 0:
            return self.t.entry_at(pos)
        return self.full_extra.ids.get(blob)

    def in_full(self, blob: bytes) -> bool:
        return int(self.t.resolve([blob])[0]) >= 0 or blob in self.full_extra.ids

    def add_full(self, p: PackInfo) -> None:
        """A pack an index object written since names (mark reads those)."""
        if self.t.pack_no(p.name) is None:
            self.full_extra.add(p)

    def full_pack(self, name: str, default: PackInfo) -> PackInfo:
        """The pack's entries as full has them (the table's, else an overlay's)."""
        no = self.t.pack_no(name)
        if no is not None:
            return PackInfo(name, self.t.kind(no), int(self.t.pack_size[no]),
                            self.t.pack_entries(no))
        return self.full_extra.packs.get(name, default)

    def full_id_chunks(self, name: str, default: PackInfo) -> Iterator[list[bytes]]:
        """The ids of ``full_pack(name, default)``'s entries, in the same order, a chunk
        at a time, without a ``PackEntry`` each for a table pack (a pack may hold ~10^5
        small blobs: a caller that stops early reads no more of it)."""
        no = self.t.pack_no(name)
        if no is None:
            yield [e.id for e in self.full_extra.packs.get(name, default).entries]
            return
        for ids, *_ in self.t.pack_columns(no).chunks():
            raw = ids.tobytes()
            yield [raw[j:j + 32] for j in range(0, len(raw), 32)]

    # ----- clean and live -----------------------------------------------------------

    def clean_pos(self, ids: Sequence[bytes]) -> Array:
        return self.t.resolve(ids, self.cond)

    def in_clean(self, blob: bytes) -> bool:
        return int(self.clean_pos([blob])[0]) >= 0 or blob in self.clean_extra.ids

    def clean_has_pack(self, name: str) -> bool:
        no = self.t.pack_no(name)
        return (no is not None and not self.cond[no]) or name in self.clean_extra.packs

    def clean_pack_of(self, blob: bytes) -> str | None:
        pos = int(self.clean_pos([blob])[0])
        if pos >= 0:
            return self.t.names[self.t.pack_of(pos)]
        hit = self.clean_extra.ids.get(blob)
        return hit[0] if hit is not None else None

    def mark_live(self, ids: Sequence[bytes], missing: set[bytes]) -> None:
        """Mark ``ids`` live; those in no pack of full go to ``missing`` instead."""
        if not ids:
            return
        np = _np()
        pos = self.clean_pos(ids)
        self.live[pos[pos >= 0]] = True
        for j in np.flatnonzero(pos < 0).tolist():
            b = ids[j]
            (self.live_extra if self.in_full(b) else missing).add(b)

    def is_live(self, blob: bytes) -> bool:
        pos = int(self.clean_pos([blob])[0])
        return bool(self.live[pos]) if pos >= 0 else blob in self.live_extra

    def live_flags(self, ids: Sequence[bytes]) -> list[bool]:
        if not ids:
            return []
        pos = self.clean_pos(ids)
        return [bool(self.live[p]) if p >= 0 else b in self.live_extra
                for p, b in zip(pos.tolist(), ids, strict=True)]

    def live_count(self) -> int:
        return int(self.live.sum()) + len(self.live_extra)

    def tree_count(self) -> int:
        return int(self.trees.sum()) + len(self.tree_extra)

    def mark_tree(self, tid: bytes) -> None:
        self.mark_trees([tid])

    def trees_marked(self, tids: Sequence[bytes]) -> list[bool]:
        """``tree_marked`` of each id, in one vectorised lookup."""
        pos = self.clean_pos(tids)
        return [bool(self.trees[p]) if p >= 0 else t in self.tree_extra
                for p, t in zip(pos.tolist(), tids, strict=True)]

    def mark_trees(self, tids: Sequence[bytes]) -> None:
        """``mark_tree`` of each id, in one vectorised lookup."""
        pos = self.clean_pos(tids)
        hit = pos[pos >= 0]
        self.trees[hit] = True
        self.live[hit] = True
        for p, t in zip(pos.tolist(), tids, strict=True):
            if p < 0:
                self.tree_extra.add(t)
                self.live_extra.add(t)

    def tree_marked(self, tid: bytes) -> bool:
        pos = int(self.clean_pos([tid])[0])
        return bool(self.trees[pos]) if pos >= 0 else tid in self.tree_extra

    def live_ids(self) -> set[bytes]:
        """Every live id as a set: for tests and small stores only (a Python object per
        live blob)."""
        np = _np()
        out = set(self.live_extra)
        for p in np.flatnonzero(self.live).tolist():
            out.add(self.t.entry_at(p)[1].id)
        return out

    def tree_ids(self) -> set[bytes]:
        """Every marked tree id (tests)."""
        np = _np()
        return set(self.tree_extra) | {self.t.entry_at(p)[1].id
                                       for p in np.flatnonzero(self.trees).tolist()}


class Surviving:
    """The *survive* view: table packs selected by a bool per ordinal, plus an overlay."""

    def __init__(self, sets: BlobSets, drop: Iterable[str]) -> None:
        self.t = sets.t
        gone = set(drop)
        self.keep: Array = ~sets.cond & ~self.t.mask(gone)
        self.extra = _Overlay()
        for name, p in sets.clean_extra.packs.items():
            if name not in gone:
                self.extra.add(p)

    def has_pack(self, name: str) -> bool:
        no = self.t.pack_no(name)
        return (no is not None and bool(self.keep[no])) or name in self.extra.packs

    def has_blob(self, blob: bytes) -> bool:
        return int(self.t.resolve([blob], ~self.keep)[0]) >= 0 or blob in self.extra.ids

    def add(self, p: PackInfo) -> None:
        no = self.t.pack_no(p.name)
        if no is not None and self.keep[no]:
            return
        self.extra.add(p)

    def packs(self) -> Iterator[PackInfo | PackColumns]:
        """Every surviving pack with its entries, one at a time (the consolidated index):
        the table's as columns (no object per entry), the overlay's as they are."""
        yield from self.t.iter_columns(self.keep)
        yield from list(self.extra.packs.values())
