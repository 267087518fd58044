"""A read-only, columnar view of the store's index for whole-store passes (gc, verify).

``BlobTable`` is built over the compact index files (``compactindex.py``) a ``Store``
loaded; it gives every index record a *position* and every pack an *ordinal*, and
answers in bulk, with numpy over the mapped columns, what gc's mark and plan and
verify's checks ask: where ids resolve, how many live bytes each pack holds, the
entries of chosen packs. Per-blob state (live bits, seen trees) is the caller's, as
numpy arrays indexed by position: one byte per blob, not a Python object.

Invariants:
- Positions: record ``i`` of file ``k`` is ``base[k] + i``; files in the store's lookup
  order, so ascending position is the order ``StoreIndex`` finds copies in.
- Ordinals: ``0 .. n_packs-1`` over the union of the files' pack tables, sorted by
  name; a pack listed in two files has one ordinal.
- ``resolve(ids, excluded)`` gives, per id, the first position (ascending) holding it
  whose pack is not excluded, or -1: the copy ``StoreIndex.get`` finds under the same
  exclusion. Ids whose 8-byte prefix occurs at more than one position (duplicates, or a
  prefix collision: rare) are resolved from a small table of all positions of such
  prefixes, built once.
- Every block of every file is checked against its sum when the table is built (a
  damaged file is rebuilt through the index's ``rebuild``), so no view meets an
  unchecked block.
- Resident memory: the pack table (~100 B per pack) and the duplicates' table; the
  records stay in the mapping, read in chunks whose pages are dropped after each pass.
  Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .compactindex import KINDS, CacheDamaged, CompactFile, columns_from_packs, write_anonymous
from .index import PackColumns, PackInfo, StoreIndex
from .pack import PackEntry

if TYPE_CHECKING:
    import numpy as np

    Array = np.ndarray[Any, Any]
else:
    Array = Any

CHUNK = 1 << 18  # records per chunk of a column pass (14 MiB of mapped records)


def _np() -> Any:
    import numpy

    return numpy


def _split(ids: Sequence[bytes]) -> tuple[Array, Array]:
    """(prefixes <u8, rests V24) of 32-byte ids."""
    np = _np()
    raw = np.frombuffer(b"".join(ids), np.uint8).reshape(-1, 32)
    pre = raw[:, :8].copy().view(">u8").ravel().astype("<u8")
    rest = raw[:, 8:].copy().view("V24").ravel()
    return pre, rest


class BlobTable:
    """See the module docstring."""

    def __init__(self, files: list[CompactFile]) -> None:
        np = _np()
        self.files = files
        base = [0]
        for f in files:
            base.append(base[-1] + f.n)
        self.base = base
        self._base_arr = np.array(base, np.int64)
        self.n = base[-1]
        tables = [f.pack_table() for f in files]
        names = (np.concatenate([t["name"] for t in tables]) if tables
                 else np.zeros(0, "V32"))
        uniq, first = np.unique(names, return_index=True)
        allp = np.concatenate(tables) if tables else np.zeros(0, tables and tables[0].dtype
                                                              or "V48")
        self.n_packs = len(uniq)
        self.pack_size: Array = (allp["size"][first].astype(np.int64) if len(uniq)
                                 else np.zeros(0, np.int64))
        self._kind: Array = (allp["kind"][first].copy() if len(uniq) else np.zeros(0, np.uint8))
        self.names: list[str] = [bytes(v).hex() for v in uniq]
        self._no = {n: i for i, n in enumerate(self.names)}
        self._local: list[Array] = [np.searchsorted(uniq, t["name"]).astype(np.uint32)
                                    for t in tables]
        self._dups: dict[bytes, list[int]] = {}
        self._dup_pre: Array = np.zeros(0, "<u8")
        self._find_dups()
        self._by_pack: Array | None = None

    @classmethod
    def of(cls, index: StoreIndex) -> BlobTable:
        """The table of a loaded index: its files (each checked whole now; a damaged one
        rebuilt) and, as one more unnamed file, the packs in its in-memory layer."""
        files = []
        for f in index.bases:
            try:
                f.check_all()
            except CacheDamaged:
                if index.rebuild is None:
                    raise
                f = index.rebuild(f)
                f.check_all()
            files.append(f)
        if index.packs:
            mem = write_anonymous(columns_from_packs(
                [], [(p.name, p.kind, p.size, p.entries) for p in index.packs.values()]))
            mem.check_all()
            files.append(mem)
        return cls(files)

    # ----- packs ----------------------------------------------------------------------

    def pack_no(self, name: str) -> int | None:
        return self._no.get(name)

    def kind(self, no: int) -> str:
        return KINDS[int(self._kind[no])]

    def mask(self, names: Iterable[str]) -> Array:
        """A bool array over ordinals, True for the named packs this table has."""
        m: Array = _np().zeros(self.n_packs, bool)
        for n in names:
            no = self._no.get(n)
            if no is not None:
                m[no] = True
        return m

    # ----- column passes --------------------------------------------------------------

    def _chunks(self) -> Iterator[tuple[int, int, Array, Array]]:
        """(position of the chunk's first record, file number, records view, ordinals) of
        every chunk of records, in position order; the file's pages dropped after each
        chunk (after each file, a pass over a 10M-record file held all 560 MiB of it)."""
        for k, f in enumerate(self.files):
            for lo in range(0, f.n, CHUNK):
                hi = min(lo + CHUNK, f.n)
                rec = f.record_view(lo, hi)
                yield self.base[k] + lo, k, rec, self._local[k][rec["pack"]]
                del rec
                f.drop_pages()

    def _find_dups(self) -> None:
        """Positions whose prefix occurs more than once (within or across files)."""
        np = _np()
        cand: list[Array] = []
        for k, f in enumerate(self.files):
            pre = f.prefix_view()
            if len(pre) > 1:
                eq = np.flatnonzero(pre[1:] == pre[:-1])
                if len(eq):
                    cand.append(self.base[k] + np.union1d(eq, eq + 1))
            for j in range(k):
                other = self.files[j].prefix_view()
                if not len(other) or not len(pre):
                    continue
                for lo in range(0, len(pre), CHUNK):
                    chunk = pre[lo:lo + CHUNK]
                    i = np.minimum(np.searchsorted(other, chunk), len(other) - 1)
                    hit = np.flatnonzero(other[i] == chunk)
                    if len(hit):
                        cand.append(self.base[k] + lo + hit)
                        # every position of those prefixes in the other file
                        for p in np.unique(chunk[hit]):
                            a = int(np.searchsorted(other, p, "left"))
                            b = int(np.searchsorted(other, p, "right"))
                            cand.append(self.base[j] + np.arange(a, b))
                del other
            del pre
        for f in self.files:
            f.drop_pages()
        if not cand:
            return
        pos = np.unique(np.concatenate(cand))
        ids = [self.id_at(int(p)) for p in pos]
        # every id whose prefix is shared (a duplicate or a collision), with all its
        # positions: the vectorised path sees only the first record of a prefix
        for p, i in zip(pos.tolist(), ids, strict=True):
            self._dups.setdefault(i, []).append(p)
        self._dup_pre = np.unique(_split(list(self._dups))[0])

    # ----- single records -------------------------------------------------------------

    def _locate(self, pos: int) -> tuple[int, int]:
        for k in range(len(self.files)):
            if pos < self.base[k + 1]:
                return k, pos - self.base[k]
        raise IndexError(pos)

    def id_at(self, pos: int) -> bytes:
        k, i = self._locate(pos)
        f = self.files[k]
        return int(f.prefix_view(i, i + 1)[0]).to_bytes(8, "big") + bytes(
            f.record_view(i, i + 1)["rest"][0])

    def pack_of(self, pos: int) -> int:
        k, i = self._locate(pos)
        return int(self._local[k][self.files[k].record_view(i, i + 1)["pack"][0]])

    def entry_at(self, pos: int) -> tuple[str, PackEntry]:
        """(pack name, entry) of the record at ``pos``."""
        k, i = self._locate(pos)
        r = self.files[k].record_view(i, i + 1)[0]
        no = int(self._local[k][r["pack"]])
        return self.names[no], PackEntry(self.kind(no), self.id_at(pos), int(r["offset"]),
                                         int(r["length"]), int(r["raw"]))

    # ----- bulk lookups ---------------------------------------------------------------

    def resolve(self, ids: Sequence[bytes], excluded: Array | None = None) -> Array:
        """Per id, its first position whose pack is not ``excluded`` (bool over
        ordinals), or -1 (see the module docstring)."""
        np = _np()
        out: Array = np.full(len(ids), -1, np.int64)
        if not ids or not self.n:
            return out
        pre, rest = _split(ids)
        dup = np.isin(pre, self._dup_pre) if len(self._dup_pre) else np.zeros(len(ids), bool)
        for j in np.flatnonzero(dup).tolist():
            for p in self._dups.get(ids[j], ()):
                if excluded is None or not excluded[self.pack_of(p)]:
                    out[j] = p
                    break
        todo = np.flatnonzero(~dup)
        for k, f in enumerate(self.files):
            if not len(todo) or not f.n:
                continue
            fp = f.prefix_view()
            i = np.minimum(np.searchsorted(fp, pre[todo]), f.n - 1)
            ok = fp[i] == pre[todo]
            del fp
            if ok.any():
                rec = f.record_view()
                sel = np.flatnonzero(ok)
                r = rec[i[sel]]
                del rec
                good = r["rest"] == rest[todo[sel]]
                if excluded is not None:
                    good &= ~excluded[self._local[k][r["pack"]]]
                ok[sel] = good
                out[todo[ok]] = self.base[k] + i[ok]
            # a non-duplicate prefix is at one position at most: found here or not here
            todo = todo[~ok]
        return out

    def live_totals(self, live: Array) -> tuple[Array, Array]:
        """(live blobs, live bytes) per pack ordinal: the records whose ``live`` bit
        (bool over positions) is set, counted in their packs."""
        np = _np()
        count = np.zeros(self.n_packs, np.int64)
        nbytes = np.zeros(self.n_packs, np.int64)
        for pos, _k, rec, packs in self._chunks():
            m = live[pos:pos + len(rec)]
            if m.any():
                p = packs[m]
                count += np.bincount(p, minlength=self.n_packs)
                nbytes += np.bincount(p, weights=rec["length"][m],
                                      minlength=self.n_packs).astype(np.int64)
        return count, nbytes

    def _pack_order(self) -> tuple[Array, Array]:
        """(positions grouped by pack ordinal, each pack's bounds in it): 4 B per blob."""
        np = _np()
        if self._by_pack is None:
            col = np.empty(self.n, np.uint32)
            for pos, _k, rec, packs in self._chunks():
                col[pos:pos + len(rec)] = packs
            self._by_pack = np.argsort(col, kind="stable").astype(np.uint32)
            self._bounds = np.searchsorted(col[self._by_pack], np.arange(self.n_packs + 1))
            del col
        return self._by_pack, self._bounds

    def iter_packs(self, keep: Array | None = None) -> Iterator[PackInfo]:
        """Every pack (or those ``keep`` selects) with its entries, one at a time (the
        first copy of a pack's records: a pack in two files is yielded once)."""
        for cols in self.iter_columns(keep):
            yield cols.to_info()

    def iter_columns(self, keep: Array | None = None) -> Iterator[PackColumns]:
        """``iter_packs`` with each pack's entries as columns (no object per entry)."""
        touched = 0
        for no in range(self.n_packs):
            if keep is not None and not keep[no]:
                continue
            cols = self.pack_columns(no)
            touched += len(cols)
            if touched >= CHUNK:  # a pack's records are scattered: drop what was read
                touched = 0
                for f in self.files:
                    f.drop_pages()
            yield cols
        for f in self.files:
            f.drop_pages()

    def pack_entries(self, no: int) -> list[PackEntry]:
        return [e for _, e in self.pack_pairs(no)]

    def pack_pairs(self, no: int) -> list[tuple[int, PackEntry]]:
        """The (position, entry) pairs of pack ``no``, in offset order, from the first
        file holding it (Python objects for this pack only), found through the pack
        order (no pass over every record per pack)."""
        k, pos = self._first_copy(no)
        if not len(pos):
            return []
        pairs = zip(pos.tolist(), self._make(k, no, pos - self.base[k]), strict=True)
        return sorted(pairs, key=lambda t: t[1].offset)

    def pack_columns(self, no: int) -> PackColumns:
        """Pack ``no``'s entries as columns read a chunk at a time, in ``pack_pairs``'
        order (offset, then position): what an index object or gc record is encoded
        from. Resident: 4 B per entry (its record numbers), never an object per entry."""
        np = _np()
        k, pos = self._first_copy(no)
        f = self.files[k]
        idx = pos - self.base[k]
        idx = idx[np.argsort(f.record_view()["offset"][idx], kind="stable")].astype(np.uint32)

        def chunk(lo: int, hi: int) -> tuple[Array, Array, Array, Array]:
            i = idx[lo:hi]
            r = f.record_view()[i]
            ids = np.empty((len(i), 32), np.uint8)
            ids[:, :8] = f.prefix_view()[i].astype(">u8").view(np.uint8).reshape(-1, 8)
            ids[:, 8:] = np.ascontiguousarray(r["rest"]).view(np.uint8).reshape(-1, 24)
            return ids, r["offset"].astype(np.uint64), r["length"].copy(), r["raw"].copy()

        return PackColumns(self.names[no], self.kind(no), int(self.pack_size[no]), len(idx),
                           chunk)

    def pack_count(self, no: int) -> int:
        """``len(pack_entries(no))`` without building the entries or reading the records
        (verify's count of a lost pack's blobs: reading them held the whole mapping)."""
        return len(self._first_copy(no)[1])

    def _first_copy(self, no: int) -> tuple[int, Array]:
        """(file, ascending positions) of pack ``no``'s records in the first file holding
        it (a later file listing the pack again repeats the same records)."""
        np = _np()
        order, bounds = self._pack_order()
        positions = order[bounds[no]:bounds[no + 1]]
        if not len(positions):
            return 0, positions.astype(np.int64)
        k = int(np.searchsorted(self._base_arr, positions[0], "right")) - 1
        return k, positions[positions < self.base[k + 1]].astype(np.int64)

    def _make(self, k: int, no: int, idx: Array) -> list[PackEntry]:
        """PackEntry objects for records ``idx`` of file ``k``, all in pack ``no``, in
        the order of ``idx``."""
        f = self.files[k]
        r = f.record_view()[idx]
        heads = f.prefix_view()[idx].astype(">u8").tobytes()
        rests = r["rest"].tobytes()
        kind = self.kind(no)
        offs, lens, raws = r["offset"].tolist(), r["length"].tolist(), r["raw"].tolist()
        del r
        return [PackEntry(kind, heads[j * 8:j * 8 + 8] + rests[j * 24:j * 24 + 24],
                          offs[j], lens[j], raws[j]) for j in range(len(offs))]

    def nbytes(self) -> int:
        """What this table holds resident beyond the mapping (for the memory test)."""
        n = self.pack_size.nbytes + self._kind.nbytes + sum(a.nbytes for a in self._local)
        if self._by_pack is not None:
            n += self._by_pack.nbytes + self._bounds.nbytes
        return n

