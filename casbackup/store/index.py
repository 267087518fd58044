"""The index: BlobId -> where the blob lives, in memory and as ``index/<id>`` objects.

``Index`` is a plain in-memory index (gc, repair and verify build their own working sets
with it). ``StoreIndex``, the one a ``Store`` holds, adds read-only compact files
(``compactindex.py``) under that in-memory layer: the index objects a command found at
its start are looked up in the files (a few KiB touched per lookup, whatever the store's
size), and only what this process added since lives in the dicts.

Invariants:
- An index object names only packs that were completely written before it (§9.1).
- Index objects are immutable; gc writes a consolidated one listing the index objects it
  ``supersedes`` and deletes those only after the new one is durable.
- When a blob appears in several packs (two writers raced, or a crash left a duplicate)
  the first entry loaded wins; any of them is a correct copy.
- ``StoreIndex`` lookups take no lock: the dicts are read under the GIL, the list of
  files is replaced whole, never changed in place. A file found damaged during a lookup
  is rebuilt by the store's ``rebuild`` callback and the lookup is repeated.
- Packs excluded by the gc protocol (DESIGN §8) are never found in the files
  (``CompactFile.set_excluded``); the in-memory layer never holds them (``Store``).
- A decoded pack is named by 64 hex digits and holds data or tree blobs; a decoded entry
  lies inside its pack (``offset + length <= size``) and its lengths fit
  u32; an object with any other entry is malformed (``IntegrityError``) as a whole.
- Encoded as sealed msgpack ``{"packs": [{"id", "kind", "size", "blobs": [[id, offset,
  length, raw_length], …]}], "supersedes": [names]}``, plus ``"exact": true`` on an
  object that names exactly the packs of everything it supersedes (older readers ignore
  the key: it only lets the compact cache keep files built from the superseded objects).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import serde
from ..errors import IntegrityError
from ..ids import DATA, TREE, is_hex_id
from .compactindex import (
    CacheDamaged,
    CompactFile,
    columns_from_packs,
    merge_files,
    write_anonymous,
)
from .pack import PackEntry, blob_id


@dataclass(slots=True)
class PackInfo:
    name: str
    kind: str
    size: int
    entries: list[PackEntry]


@dataclass(slots=True)
class Location:
    pack: str
    entry: PackEntry


def encode_index(packs: Iterable[PackInfo], supersedes: Iterable[str] = (),
                 exact: bool = False) -> bytes:
    enc = IndexEncoder()
    for p in packs:
        enc.add(p)
    return bytes(enc.view(enc.finish(supersedes, exact)))


Rows = tuple[Any, Any, Any, Any]  # (ids (n, 32) uint8, offsets, lengths, raw lengths)


@dataclass(slots=True)
class PackColumns:
    """A pack's ``n`` entries, in offset order, read as columns ``chunk(lo, hi)`` at a
    time (``Rows``): what gc encodes a big pack's rows from (a pack of small blobs holds
    ~10^5) without a Python object, or a resident row, per entry."""
    name: str
    kind: str
    size: int
    n: int
    chunk: Callable[[int, int], Rows]

    def __len__(self) -> int:
        return self.n

    def chunks(self) -> Iterator[Rows]:
        for lo in range(0, self.n, ROW_CHUNK):
            yield self.chunk(lo, min(lo + ROW_CHUNK, self.n))

    def to_info(self) -> PackInfo:
        entries = []
        for ids, offs, lens, raws in self.chunks():
            raw = ids.tobytes()
            entries += [PackEntry(self.kind, raw[32 * j:32 * j + 32], o, n, r)
                        for j, (o, n, r) in enumerate(zip(offs.tolist(), lens.tolist(),
                                                          raws.tolist(), strict=True))]
        return PackInfo(self.name, self.kind, self.size, entries)


ROW_CHUNK = 4096  # rows encoded a round: the temporaries are a few hundred bytes each
# msgpack's unsigned ints: (below this, first byte, bytes after it); fixint has none
_UINTS = ((1 << 7, None, 0), (1 << 8, 0xCC, 1), (1 << 16, 0xCD, 2), (1 << 32, 0xCE, 4),
          (1 << 64, 0xCF, 8))


def encode_rows(out: bytearray, rows: Rows) -> None:
    """Append ``[id, offset, length, raw]`` for each row, as ``serde.pack`` encodes each
    list (fixarray of 4, bin 8 of 32 bytes, the smallest unsigned int), computed over
    the columns (no Python object per row)."""
    import numpy as np

    ids = rows[0]
    if not len(ids):
        return
    cols = [np.asarray(c, np.uint64) for c in rows[1:]]
    widths = [_uint_width(c) for c in cols]
    row = 35 + widths[0] + widths[1] + widths[2]
    start = np.zeros(len(ids), np.int64)
    np.cumsum(row[:-1], out=start[1:])
    buf = np.zeros(int(start[-1] + row[-1]), np.uint8)
    buf[start] = 0x94
    buf[start + 1] = 0xC4
    buf[start + 2] = 32
    for j in range(32):
        buf[start + 3 + j] = ids[:, j]
    at = start + 35
    for c, w in zip(cols, widths, strict=True):
        _put_uint(buf, at, c, w)
        at += w
    out += buf.data


def _uint_width(c: Any) -> Any:
    import numpy as np

    w = np.full(len(c), 9, np.int64)
    for limit, _first, n in reversed(_UINTS[:-1]):
        w[c < limit] = 1 + n if _first is not None else 1
    return w


def _put_uint(buf: Any, at: Any, c: Any, w: Any) -> None:
    import numpy as np

    for _limit, first, n in _UINTS:
        m = w == (1 + n if first is not None else 1)
        if not m.any():
            continue
        q, v = at[m], c[m]
        if first is None:
            buf[q] = v.astype(np.uint8)
            continue
        buf[q] = first
        be = v.astype(f">u{n}").view(np.uint8).reshape(-1, n)
        for j in range(n):
            buf[q + 1 + j] = be[:, j]


class IndexEncoder:
    """An index object's encoding built one pack at a time into one buffer: the bytes of
    ``serde.pack`` of the whole map (a list's encoding is its header, then each item's),
    with no Python object per blob beyond the pack being added (gc's consolidated index
    and its record of a million freed blobs). ``room`` bytes are kept free before the
    encoding (where ``finish`` returns it starts) for a caller's own header."""

    HEAD = 16  # the map's header, "packs" and the list's header: at most 12 bytes

    def __init__(self, room: int = 0) -> None:
        self._start = room + self.HEAD
        self.buf = bytearray(self._start)
        self.names: list[str] = []  # the packs added, in order
        self.blobs = 0  # their entries

    def add(self, p: PackInfo | PackColumns) -> None:
        if isinstance(p, PackInfo):
            self.buf += serde.pack({"id": p.name, "kind": p.kind, "size": p.size,
                                    "blobs": [[e.id, e.offset, e.length, e.raw_length]
                                              for e in p.entries]})
            n = len(p.entries)
        else:  # the same map, its rows from the columns
            n = len(p)
            self.buf += (serde.map_header(4) + serde.pack("id") + serde.pack(p.name)
                         + serde.pack("kind") + serde.pack(p.kind) + serde.pack("size")
                         + serde.pack(p.size) + serde.pack("blobs") + serde.array_header(n))
            for rows in p.chunks():
                encode_rows(self.buf, rows)
        self.names.append(p.name)
        self.blobs += n

    def finish(self, supersedes: Iterable[str] = (), exact: bool = False) -> int:
        """Close the map; returns the offset in ``buf`` where the encoding starts."""
        head = (serde.map_header(3 if exact else 2) + serde.pack("packs")
                + serde.array_header(len(self.names)))
        start = self._start - len(head)
        self.buf[start:self._start] = head
        self.buf += serde.pack("supersedes")
        self.buf += serde.pack(list(supersedes))
        if exact:
            self.buf += serde.pack("exact")
            self.buf += serde.pack(True)
        return start

    def view(self, start: int) -> memoryview:
        return memoryview(self.buf)[start:]


def decode_index(data: bytes, name: str = "?") -> tuple[list[PackInfo], list[str]]:
    packs, supersedes, _exact = decode_index_object(data, name)
    return packs, supersedes


def decode_index_object(data: bytes, name: str = "?") -> tuple[list[PackInfo], list[str], bool]:
    """(packs, supersedes, exact): ``exact`` marks a consolidation (``consolidate.py``)
    naming exactly every pack of the objects it supersedes."""
    m = serde.unpack(data, f"index {name[:16]}")
    try:
        packs = []
        for p in m["packs"]:
            pack, kind, size = check_pack(p["id"], p["kind"], int(p["size"]))
            entries = [
                _entry(kind, size, blob_id(i), int(o), int(n), int(r))
                for i, o, n, r in p["blobs"]
            ]
            packs.append(PackInfo(pack, kind, size, entries))
        return (packs, [str(s) for s in m.get("supersedes", [])],
                m.get("exact", False) is True)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise IntegrityError(f"index {name[:16]} is malformed: {e}") from None


_PACK_KINDS = (DATA, TREE)  # what packs hold (pack headers, locks: no)
_U32 = 2**32  # lengths are u32 in the compact files (compactindex.py): a blob is < 4 GiB


def check_pack(pack: Any, kind: Any, size: int) -> tuple[str, str, int]:
    """A pack's fields as an index object names them, refused (ValueError) unless the
    name is 64 hex digits, the kind one packs hold and the size sane (the one rule, also
    for verify's streaming check, ``indexcheck.py``)."""
    if type(pack) is not str or not is_hex_id(pack):
        raise ValueError(f"pack name {str(pack)[:70]!r} is not 64 hex digits")
    if kind not in _PACK_KINDS:
        raise ValueError(f"pack {pack[:16]} has kind {str(kind)[:20]!r}")
    if not 0 <= size < 2**63:
        raise ValueError(f"pack size {size}")
    return pack, kind, size


def check_entry(size: int, offset: int, length: int, raw: int) -> None:
    """Refuse (ValueError) an entry that does not lie inside its pack of ``size`` bytes:
    a hostile index must not send a reader past a pack's end or make it allocate what
    no blob can be."""
    if not (offset >= 0 and 0 < length < _U32 and 0 <= raw < _U32
            and offset + length <= size):
        raise ValueError(f"entry [offset {offset}, length {length}, raw length {raw}] "
                         f"does not fit its pack of {size} bytes")


def _entry(kind: str, size: int, id_: bytes, offset: int, length: int, raw: int) -> PackEntry:
    check_entry(size, offset, length, raw)
    return PackEntry(kind, id_, offset, length, raw)


@dataclass
class Index:
    """The merged in-memory index. Thread-safe for concurrent lookups and adds."""

    blobs: dict[bytes, Location] = field(default_factory=dict)
    packs: dict[str, PackInfo] = field(default_factory=dict)
    # index object name -> the pack names it lists
    objects: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # bumped by every spill, before its packs leave the dicts: a lookup that missed
    # and a later check of the dicts see the same layer only while it is unchanged
    spills: int = 0

    def add_pack(self, pack: PackInfo) -> None:
        with self._lock:
            if pack.name in self.packs:
                return
            self.packs[pack.name] = pack
            for e in pack.entries:
                if e.id not in self.blobs:
                    self.blobs[e.id] = Location(pack.name, e)

    def add_object(self, name: str, packs: list[PackInfo]) -> None:
        for p in packs:
            self.add_pack(p)
        self.objects[name] = [p.name for p in packs]

    def replace_with(self, other: Index) -> None:
        """Take ``other``'s contents (a full reload), keeping this object's identity."""
        with self._lock:
            self.blobs, self.packs, self.objects = other.blobs, other.packs, other.objects

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self.blobs

    def contains_many(self, blob_ids: list[bytes]) -> list[bool]:
        """``[b in self for b in blob_ids]`` (``StoreIndex``: in a few reads a file)."""
        return [b in self for b in blob_ids]

    def in_spilled(self, blob_id: bytes) -> bool:
        """Whether a spill moved BLOB_ID out of the dicts (never, here)."""
        return False

    def get(self, blob_id: bytes) -> Location | None:
        return self.blobs.get(blob_id)

    def lookup(self, blob_id: bytes) -> Location:
        loc = self.blobs.get(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index")
        return loc

    def __len__(self) -> int:
        return len(self.blobs)

    def iter_packs(self) -> Iterator[PackInfo]:
        return iter(list(self.packs.values()))

    def stats(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for p in self.packs.values():
            by_kind[p.kind] = by_kind.get(p.kind, 0) + 1
        return {
            "blobs": len(self.blobs),
            "packs": len(self.packs),
            "packs_by_kind": by_kind,
            "index_objects": len(self.objects),
        }


@dataclass
class StoreIndex(Index):
    """Compact files (the index objects loaded at the start) under the in-memory layer.
    ``objects`` names the files' sources too (with no packs listed for them).

    Spill (issue #12 point 1): once an index object this process wrote is durable,
    ``spill`` moves its packs out of the dicts into ``spilled``, unnamed sorted files
    (O_TMPFILE: no name anywhere, gone with the process -- a killed writer leaves
    nothing a later command could trust) merged like a binary counter, so a backup's
    resident index follows the packs not yet in an object, not the blobs it added."""

    bases: list[CompactFile] = field(default_factory=list)
    spilled: list[CompactFile] = field(default_factory=list)
    # rebuilds a damaged file; set by the store
    rebuild: Callable[[CompactFile], CompactFile] | None = None
    _excluded: frozenset[str] = frozenset()

    def set_bases(self, files: list[CompactFile], names: Iterable[str] = ()) -> None:
        """Look blobs up in ``files`` from now on; ``names`` are the index objects they
        cover (recorded in ``objects``). The files replaced are left to the garbage
        collector: another thread may be inside a lookup in one of them."""
        for f in files:
            f.set_excluded(self._excluded)
        with self._lock:
            for s in names:
                self.objects.setdefault(s, [])
            self.bases = list(files)

    def set_excluded(self, names: frozenset[str]) -> None:
        """Packs the files must not be found in (the in-memory layer is the caller's)."""
        self._excluded = names
        for f in self.bases + self.spilled:
            f.set_excluded(names)

    def take_bases(self) -> list[CompactFile]:
        """Detach the files, spilled ones too (``Store.load_full_index`` copied them
        into the dicts; ``replace_with`` moves them to the new index)."""
        with self._lock:
            old, self.bases = self.bases + self.spilled, []
            self.spilled = []
        return old

    def spill(self, name: str, packs: list[PackInfo],
              directory: Path | None = None) -> CompactFile | None:
        """Index object NAME (durable now) names PACKS: move them out of the dicts into
        an unnamed sorted file (in DIRECTORY, else the temporary directory); the file
        (its source is NAME), or None when there was nothing to move. Lookups never
        miss meanwhile: the file is published before the dict entries go."""
        mine = [p for p in packs if self.packs.get(p.name) is p]
        if not mine:
            return None
        run = write_anonymous(columns_from_packs(
            [name], [(p.name, p.kind, p.size, p.entries) for p in mine]), directory)
        _hold(run)
        run.set_excluded(self._excluded)
        with self._lock:
            self.spilled = _binary_counter(self.spilled + [run])
            self.spills += 1  # before the dicts lose them (Packer.reserve relies on it)
            for p in mine:
                if self.packs.get(p.name) is p:
                    del self.packs[p.name]
                    for e in p.entries:
                        loc = self.blobs.get(e.id)
                        if loc is not None and loc.pack == p.name:
                            del self.blobs[e.id]
        return run

    def _find(self, blob_id: bytes) -> Location | None:
        for f in self.spilled + self.bases:
            try:
                hit = f.find(blob_id)
            except CacheDamaged:
                self._replace(f)
                return self._find(blob_id)
            if hit is not None:
                return Location(hit[0], hit[1])
        return None

    def _has(self, blob_id: bytes) -> bool:
        for f in self.spilled + self.bases:
            try:
                if f.contains(blob_id):
                    return True
            except CacheDamaged:
                self._replace(f)
                return self._has(blob_id)
        return False

    def _replace(self, damaged: CompactFile) -> None:
        with self._lock:
            if damaged in self.spilled:  # our own unnamed file: nothing to rebuild from
                raise IntegrityError(f"a spilled index file of this process is damaged "
                                     f"({damaged.path.name}): its disk is failing?")
            if damaged not in self.bases:
                return  # another thread rebuilt it already
            if self.rebuild is None:
                raise IntegrityError(f"local index cache {damaged.path.name} is damaged")
            fresh = self.rebuild(damaged)
            fresh.set_excluded(self._excluded)
            self.bases = [fresh if f is damaged else f for f in self.bases]

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self.blobs or self._has(blob_id)

    def contains_many(self, blob_ids: list[bytes]) -> list[bool]:
        """``[b in self for b in blob_ids]``: the dicts first, then each file asked once
        for the ids still missing (``CompactFile.contains_many``), as ``__contains__``
        does for one id (the same order, so a spill meanwhile misses nothing)."""
        blobs = self.blobs
        out = [b in blobs for b in blob_ids]
        todo = [k for k, hit in enumerate(out) if not hit]
        for f in self.spilled + self.bases:
            if not todo:
                break
            try:
                got = f.contains_many([blob_ids[k] for k in todo])
            except CacheDamaged:
                self._replace(f)
                return self.contains_many(blob_ids)
            for k, hit in zip(todo, got, strict=True):
                if hit:
                    out[k] = True
            todo = [k for k, hit in zip(todo, got, strict=True) if not hit]
        return out

    def in_spilled(self, blob_id: bytes) -> bool:
        return any(f.contains(blob_id) for f in self.spilled)

    def get(self, blob_id: bytes) -> Location | None:
        loc = self.blobs.get(blob_id)
        return loc if loc is not None else self._find(blob_id)

    def lookup(self, blob_id: bytes) -> Location:
        loc = self.get(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index")
        return loc

    def __len__(self) -> int:
        """Entries (a blob in two packs of different files counts twice)."""
        return len(self.blobs) + sum(len(f) for f in self.bases + self.spilled)

    def iter_packs(self) -> Iterator[PackInfo]:
        """Every pack: the in-memory ones, then the files' (not excluded), read whole."""
        mem = list(self.packs.values())
        yield from mem
        seen = {p.name for p in mem}
        for f in self.spilled + self.bases:
            for name, kind, size, entries in f.iter_packs():
                if name not in seen and name not in self._excluded:
                    seen.add(name)
                    yield PackInfo(name, kind, size, entries)

    def replace_with(self, other: Index) -> None:
        bases = other.take_bases() if isinstance(other, StoreIndex) else []
        super().replace_with(other)
        self.set_bases(bases)  # other's objects (taken above) already name their sources

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["blobs"] = len(self)
        out["packs"] += sum(f.n_packs for f in self.bases + self.spilled)
        return out


SPILL_BLOBS = 1 << 16  # a writer's index object (and spill) after this many blobs, or after
# ``Packer.index_every`` packs, whichever comes first: the in-memory layer costs ~280 B a
# blob until its index object is written, and a pack of small files holds ~24k blobs, so
# 8 packs held ~190k blobs (~55 MiB) before this; 65,536 bounds it at ~18 MiB + what the
# packs in flight hold, at one index object per 65,536 new blobs (benchmarks/README.md,
# "a full backup's memory")
SPILL_WINDOW = 1 << 14  # records a round when spilled files merge (~4 MiB working set:
# a backup's RSS; the cache's merges use compactindex.MERGE_WINDOW, 2**17, ~35 MiB)


def _binary_counter(files: list[CompactFile]) -> list[CompactFile]:
    """Merge the smallest files (unnamed) while one is smaller than twice the records of
    all smaller ones: O(log n) files, each record rewritten O(log n) times."""
    while True:
        files = sorted(files, key=lambda f: -len(f))
        sizes = [len(f) for f in files]
        tail = next((i for i in range(len(files) - 1)
                     if sizes[i] < 2 * sum(sizes[i + 1:])), None)
        if tail is None:
            return files
        merged = merge_files(None, files[tail:], SPILL_WINDOW)
        _hold(merged)
        files = files[:tail] + [merged]


RESIDENT_MAX = 1 << 20  # a spilled file of at most this many records keeps its prefixes
# in memory (``CompactFile.hold_prefixes``): a backup's dedup check of a new blob against
# its own spilled files then costs no system call (a pread is ~3 us on the shared VM: +1.2
# CPU-s on a 200k-file backup); the binary counter's sizes double, so the files held sum
# to < 2 x RESIDENT_MAX records (16 MiB), whatever the backup's size


def _hold(f: CompactFile) -> None:
    if len(f) <= RESIDENT_MAX:
        try:
            f.hold_prefixes()
        except CacheDamaged as e:  # as a lookup would name it (``StoreIndex._replace``)
            raise IntegrityError(f"a spilled index file of this process is damaged "
                                 f"({e}): its disk is failing?") from None

