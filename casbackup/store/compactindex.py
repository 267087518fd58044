"""One compact index file: the blobs of a set of index objects as sorted fixed-width records.

A file is derived from the store's index objects (the truth) and lives in the local cache
(``indexcache.py`` decides which files exist and when they are built or merged); nothing
in it is trusted before it is checked.

Layout (little-endian; every section a multiple of 8 bytes)::

    header   64 B   magic "CBIX0001", n_sources u32, n_packs u32, n_records u64,
                    block u32, pad, digest 32 B = sources_digest(sources)
    sources  n_sources × 32 B     raw names of the index objects it was built from, sorted
    packs    n_packs × 48 B       [raw name 32 B, size u64, kind u8, pad], sorted by name
    fence    n_blocks × u64       the first prefix of each block of ``block`` records
    sums     n_blocks × 16 B      BLAKE3(prefix block ‖ record block)[:16]
    metasum  32 B                 BLAKE3 of everything above
    prefixes n_records × u64      the first 8 bytes of each blob id, big-endian as a number,
                                  in ascending order
    records  n_records × 48 B     [rest of the id 24 B, pack u32, length u32, offset u64,
                                  raw_length u32, pad]

Invariants:
- ``open_file`` accepts a file only when its name, length, header digest (the set of
  source names) and metasum agree; the prefix and record blocks are checked lazily, each
  against its sum the first time a lookup touches it, so a lookup never returns a record
  from a damaged block: it raises ``CacheDamaged`` and the caller rebuilds the file.
- Every pack of every source is present, condemned or not: exclusion is the reader's
  (``set_excluded``), so one file serves every process. A pack named by two sources is
  listed once.
- Resident memory does not grow with the file: the fence and pack table are read into
  memory (8 B per 1024 blobs, 48 B per pack); lookups and block checks read with
  ``pread`` and map nothing. (Touching the mapping instead mapped a whole page-cache
  folio per fault: ~900 KiB a touch of a 560 MB file on Linux 6.18, so a 200-file
  restore at 10M blobs held 60-130 MiB of it.) Only the whole-file column views map
  the file, and their passes drop its pages as they go (``drop_pages``).
- ``contains(id)`` answers exactly as ``find(id) is not None`` without building the
  answer (a dedup check: ~6 us against ~9 us for ``find`` on 200k entries).
- Lookups take no lock: ``pread`` is positional (and releases the GIL), the
  verified-block map only ever turns bytes from 0 to 1, and the excluded map is replaced
  whole.
- A file truncated or unreadable under a reader is ``CacheDamaged`` (a short read), never
  a crash (a mapping would raise SIGBUS).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import mmap
import os
import struct
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import blake3

if TYPE_CHECKING:
    import numpy as np

from ..errors import CasError
from .pack import PackEntry

MAGIC = b"CBIX0001"
SUFFIX = ".cbx"
BLOCK = 1024  # records per checked block: 8 KiB of prefixes + 48 KiB of records
KINDS = ("data", "tree")
_HEADER = struct.Struct("<8sIIQI4x32s")
_REC = struct.Struct("<24sIIQI4x")
_PACK = struct.Struct("<32sQB7x")
_U32 = struct.Struct("<I")
_SUM = 16
_CHUNK = 1 << 14  # records ``Flat.columns`` fills at a time
_RUN_BLOCKS = 2  # blocks of prefixes one read of ``contains_many`` covers at most
_SPAN_RECS = 8192  # records one read of ``contains_many``'s matching covers at most
assert _HEADER.size == 64 and _REC.size == _PACK.size == 48


def _numpy() -> Any:
    """numpy, imported only to build, merge or read a file whole (a lookup needs none of
    it, and importing it costs a small command ~0.1 s)."""
    import numpy

    return numpy


def _dtypes() -> tuple[Any, Any]:
    np = _numpy()
    pack = np.dtype([("name", "V32"), ("size", "<u8"), ("kind", "u1"), ("pad", "V7")])
    rec = np.dtype([("rest", "V24"), ("pack", "<u4"), ("length", "<u4"),
                    ("offset", "<u8"), ("raw", "<u4"), ("pad", "V4")])
    assert rec.itemsize == pack.itemsize == 48
    return pack, rec


class CacheDamaged(CasError):
    """A compact index file failed a check: delete it and build it again."""


def sources_digest(names: Iterable[str]) -> bytes:
    """The 32-byte digest naming the set of index objects ``names``."""
    h = blake3.blake3(b"casbackup compact index sources\n")
    for n in sorted(set(names)):
        h.update(bytes.fromhex(n))
    return h.digest()


def file_name(names: Iterable[str]) -> str:
    return sources_digest(names).hex() + SUFFIX


@dataclass(slots=True)
class Columns:
    """The content of a file before it is written: sorted pack table, sorted records."""

    sources: list[str]
    packs: np.ndarray[Any, Any]  # PACK_DTYPE, sorted by name
    prefixes: np.ndarray[Any, Any]  # <u8, ascending
    records: np.ndarray[Any, Any]  # REC_DTYPE, in the order of prefixes


def columns_from_packs(sources: Iterable[str],
                       packs: Iterable[tuple[str, str, int, list[PackEntry]]]) -> Columns:
    """Columns for ``packs`` ``(name, kind, size, entries)``; a repeated pack is kept once.
    Raises ValueError for a kind or a number the format cannot hold."""
    flat = Flat()
    seen: set[str] = set()
    for name, kind, size, entries in packs:
        if name in seen:
            continue
        seen.add(name)
        for e in entries:
            flat.entry(e.id, e.offset, e.length, e.raw_length)
        flat.pack(name, kind, size)
    return flat.columns(sources)


class Flat:
    """Entries collected in flat columns (48 B an entry, no Python object per entry),
    then sorted into ``Columns``: the one place records are made. Entries come first,
    then ``pack(name, kind, size)`` names the pack of those since the last call."""

    def __init__(self) -> None:
        self.ids = bytearray()
        self.offsets = array("Q")
        self.lengths = array("I")
        self.raws = array("I")
        self.packno = array("I")  # per entry: its pack's number here
        self.packs: list[tuple[bytes, int, int]] = []  # (raw name, size, kind)

    def __len__(self) -> int:
        return len(self.offsets)

    def entry(self, id_: bytes, offset: int, length: int, raw: int) -> None:
        """Raises ValueError for a number the format cannot hold."""
        if len(id_) != 32:
            raise ValueError("an index entry's blob id is not 32 bytes")
        if not (0 <= offset < 2**64 and 0 <= length < 2**32 and 0 <= raw < 2**32):
            raise ValueError(f"an index entry does not fit the compact index: offset "
                             f"{offset}, length {length}, raw length {raw}")
        self.offsets.append(offset)
        self.lengths.append(length)
        self.raws.append(raw)
        self.ids += id_

    def drop_pending(self) -> None:
        """Forget the entries since the last ``pack`` call."""
        k = len(self.packno)
        del self.ids[k * 32:], self.offsets[k:], self.lengths[k:], self.raws[k:]

    def pack(self, name: str, kind: str, size: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"pack {name[:16]} has an unknown kind {kind!r}")
        if not 0 <= size < 2**64:
            raise ValueError(f"pack {name[:16]} has size {size}")
        self.packno.extend([len(self.packs)] * (len(self.offsets) - len(self.packno)))
        self.packs.append((bytes.fromhex(name), size, KINDS.index(kind)))

    def columns(self, sources: Iterable[str]) -> Columns:
        np = _numpy()
        PACK_DTYPE, REC_DTYPE = _dtypes()
        assert len(self.packno) == len(self.offsets), "entries without their pack"
        ptab = np.zeros(len(self.packs), PACK_DTYPE)
        if self.packs:
            ptab["name"] = np.frombuffer(b"".join(p[0] for p in self.packs), "V32")
            ptab["size"] = [p[1] for p in self.packs]
            ptab["kind"] = [p[2] for p in self.packs]
        n = len(self.offsets)
        recs = np.zeros(n, REC_DTYPE)
        if not n:
            return _sorted(list(sources), ptab, np.zeros(0, "<u8"), recs)
        # sorted first, then each record made in its place a chunk at a time: no
        # whole-column temporary beyond the prefixes and the order (16 B a record)
        raw = np.frombuffer(self.ids, np.uint8).reshape(-1, 32)
        prefixes = np.ascontiguousarray(raw[:, :8]).view(">u8").ravel().astype("<u8")
        order = np.argsort(prefixes, kind="stable")  # ties keep their first-loaded order
        prefixes = prefixes[order]
        cols = [("pack", self.packno, "<u4"), ("length", self.lengths, "<u4"),
                ("offset", self.offsets, "<u8"), ("raw", self.raws, "<u4")]
        for lo in range(0, n, _CHUNK):
            o = order[lo:lo + _CHUNK]
            part = recs[lo:lo + _CHUNK]
            part["rest"] = np.ascontiguousarray(raw[o, 8:]).view("V24").ravel()
            for field_, values, dt in cols:
                part[field_] = np.frombuffer(values, dt)[o]
        return _sorted(list(sources), ptab, prefixes, recs, records_sorted=True)


def merge(parts: list[Columns]) -> Columns:
    """One set of columns holding every part's packs and records (in memory: for small
    parts; ``merge_files`` streams files of any size)."""
    np = _numpy()
    PACK_DTYPE, REC_DTYPE = _dtypes()
    names = np.concatenate([p.packs["name"] for p in parts]) if parts else np.zeros(0, "V32")
    uniq, first = np.unique(names, return_index=True)
    allpacks = np.concatenate([p.packs for p in parts]) if parts else np.zeros(0, PACK_DTYPE)
    ptab = allpacks[first]
    recs_l, pre_l = [], []
    claimed = np.zeros(len(uniq), bool)  # a pack in two parts: its records once
    for p in parts:
        r = p.records.copy()
        remap = np.searchsorted(uniq, p.packs["name"]).astype("<u4")
        pre = p.prefixes
        if len(r):
            r["pack"] = remap[r["pack"]]
            keep = ~claimed[r["pack"]]
            r, pre = r[keep], pre[keep]
        claimed[remap] = True
        recs_l.append(r)
        pre_l.append(pre)
    recs = np.concatenate(recs_l) if recs_l else np.zeros(0, REC_DTYPE)
    pre = np.concatenate(pre_l) if pre_l else np.zeros(0, "<u8")
    sources = sorted({s for p in parts for s in p.sources})
    return _sorted(sources, ptab, pre, recs, packs_sorted=True)


def _sorted(sources: list[str], ptab: np.ndarray[Any, Any], prefixes: np.ndarray[Any, Any],
            recs: np.ndarray[Any, Any], packs_sorted: bool = False,
            records_sorted: bool = False) -> Columns:
    np = _numpy()
    if not packs_sorted and len(ptab):
        order = np.argsort(ptab["name"], kind="stable")
        ptab = ptab[order]
        inverse = np.empty(len(order), "<u4")
        inverse[order] = np.arange(len(order), dtype="<u4")
        if len(recs):
            recs["pack"] = inverse[recs["pack"]]
    if len(recs) and not records_sorted:
        order = np.argsort(prefixes, kind="stable")  # ties keep their first-loaded order
        prefixes, recs = prefixes[order], recs[order]
    if len(ptab) >= 2**32 or len(ptab) and np.any(ptab["name"][1:] == ptab["name"][:-1]):
        raise ValueError("pack table is not a set")
    return Columns(sorted(sources), ptab, prefixes, recs)


def write_anonymous(cols: Columns, directory: Path | None = None) -> CompactFile:
    """``cols`` as an unnamed temporary file (O_TMPFILE: no directory entry anywhere; in
    DIRECTORY, else the temporary directory), open: for a store without a cache
    directory, and for the sorted runs a build merges."""
    where = str(directory) if directory is not None else tempfile.gettempdir()
    try:
        with tempfile.TemporaryFile(dir=directory) as f:  # the mapping keeps it alive
            for part in _parts(cols)[1]:
                f.write(part)
            f.flush()
            return CompactFile(Path("<memory>" + SUFFIX), cols.sources, anonymous=f)
    except OSError as e:  # a nameless file's ENOSPC names nothing: name its directory
        if e.filename is None:
            e.filename = where
        raise


def _parts(cols: Columns) -> tuple[bytes, list[Any]]:
    """(digest, the sections of the file in order: bytes, then the columns as byte
    views -- no copy of them, which was 56 B a record more at a spill's peak)."""
    np = _numpy()
    nb = _blocks(len(cols.prefixes))
    pre = np.ascontiguousarray(cols.prefixes, "<u8").view(np.uint8)
    rec = np.ascontiguousarray(cols.records).view(np.uint8)
    fence = cols.prefixes[::BLOCK].astype("<u8").tobytes()
    sums = bytearray()
    for b in range(nb):
        h = blake3.blake3(pre[b * BLOCK * 8:(b + 1) * BLOCK * 8])
        h.update(rec[b * BLOCK * 48:(b + 1) * BLOCK * 48])
        sums += h.digest()[:_SUM]
    digest = sources_digest(cols.sources)
    header = _HEADER.pack(MAGIC, len(cols.sources), len(cols.packs), len(cols.prefixes),
                          BLOCK, digest)
    meta = b"".join([header, b"".join(bytes.fromhex(s) for s in cols.sources),
                     np.ascontiguousarray(cols.packs).tobytes(), fence, bytes(sums)])
    return digest, [meta, blake3.blake3(meta).digest(), pre, rec]


def write_file(directory: Path, cols: Columns) -> Path:
    """Write ``cols`` as ``<digest>.cbx`` in ``directory``: to a temporary name, fsynced,
    then renamed, so a reader sees a whole file or none. Returns the path."""
    digest, parts = _parts(cols)
    path = directory / (digest.hex() + SUFFIX)
    tmp = directory / f".{digest.hex()}.{os.getpid()}.{id(cols):x}.tmp"
    try:
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _sync_dir(directory)
    return path


# records taken from all inputs together per round of ``merge_files``: its working set
# is a few copies of this many 56-byte records (~25 MiB at 2**17), whatever the inputs'
# total; the inputs are read (``pread``), never mapped
MERGE_WINDOW = 1 << 17


def merge_files(directory: Path | None, files: list[CompactFile],
                window: int | None = None) -> CompactFile:
    """One file holding every record of FILES (open, checked), written without holding
    them in memory: a k-way merge of the sorted inputs, ``MERGE_WINDOW`` (or WINDOW)
    records a round,
    written in place at their final offsets. In DIRECTORY as ``<digest>.cbx`` (temporary
    name, fsynced, renamed), or an unnamed file when DIRECTORY is None. A pack in two
    inputs keeps the records of the first. Raises ``CacheDamaged`` when an input block
    fails its check (nothing is written then)."""
    np = _numpy()
    PACK_DTYPE, REC_DTYPE = _dtypes()
    sources = sorted({s for f in files for s in f.sources})
    tabs = [f.pack_table() for f in files]
    allpacks = np.concatenate(tabs) if tabs else np.zeros(0, PACK_DTYPE)
    uniq, first = np.unique(allpacks["name"], return_index=True)
    ptab = allpacks[first]
    if len(ptab) >= 2**32:
        raise ValueError("pack table is too big")
    starts = np.cumsum([0] + [len(t) for t in tabs])
    owner = np.searchsorted(starts, first, side="right") - 1  # the first input naming it
    remaps, keeps, total = [], [], 0
    for i, (f, t) in enumerate(zip(files, tabs, strict=True)):
        remap = np.searchsorted(uniq, t["name"]).astype("<u4")
        keep = owner[remap] == i
        remaps.append(remap)
        keeps.append(None if keep.all() else keep)
        total += f.n if keep.all() else f.count_kept(keep)
    nb = _blocks(total)
    meta_len = _HEADER.size + len(sources) * 32 + len(ptab) * 48 + nb * (8 + _SUM)
    pre_off = meta_len + 32
    rec_off = pre_off + total * 8
    fence = np.zeros(nb, "<u8")
    sums = bytearray()
    digest = sources_digest(sources)
    if directory is None:
        out: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finally)
        tmp = None
    else:
        tmp = directory / f".{digest.hex()}.{os.getpid()}.{id(files):x}.tmp"
        out = open(tmp, "wb+")  # noqa: SIM115 (closed in finally)
    try:
        fd = out.fileno()
        os.ftruncate(fd, pre_off + total * 56)
        done = 0  # records written
        pend_p, pend_r = np.zeros(0, "<u8"), np.zeros(0, REC_DTYPE)

        def emit(pre: Any, rec: Any, last: bool) -> None:
            nonlocal done, pend_p, pend_r
            pre = np.concatenate([pend_p, pre]) if len(pend_p) else pre
            rec = np.concatenate([pend_r, rec]) if len(pend_r) else rec
            full = len(pre) if last else len(pre) // BLOCK * BLOCK
            if full:
                pb, rb = pre[:full].view(np.uint8), rec[:full].view(np.uint8)
                _pwrite_all(fd, pb, pre_off + done * 8)
                _pwrite_all(fd, rb, rec_off + done * 48)
                b0 = done // BLOCK
                fence[b0:b0 + _blocks(full)] = pre[:full:BLOCK]
                for k in range(0, full, BLOCK):
                    h = blake3.blake3(pb[k * 8:(k + BLOCK) * 8])
                    h.update(rb[k * 48:(k + BLOCK) * 48])
                    sums.extend(h.digest()[:_SUM])
                done += full
            pend_p, pend_r = pre[full:].copy(), rec[full:].copy()

        pos = [0] * len(files)
        live = [i for i, f in enumerate(files) if f.n]
        while live:
            width = max(1, (window or MERGE_WINDOW) // len(live))
            ends = {i: min(files[i].n, pos[i] + width) for i in live}
            # every record up to the smallest last prefix of a window that does not
            # reach its input's end is final this round (later ones are >= it)
            cut = min((int(files[i].prefixes(ends[i] - 1, ends[i])[0]) for i in live
                       if ends[i] < files[i].n), default=None)
            pres, recs = [], []
            for i in live:
                f = files[i]
                p = f.prefixes(pos[i], ends[i])
                k = len(p) if cut is None else int(np.searchsorted(p, cut, side="right"))
                if not k:
                    continue
                r = f.records(pos[i], pos[i] + k)
                p = p[:k]
                kp = keeps[i]
                if kp is not None:
                    sel = kp[r["pack"]]
                    p, r = p[sel], r[sel]
                r["pack"] = remaps[i][r["pack"]]
                pos[i] += k
                pres.append(p)
                recs.append(r)
            live = [i for i in live if pos[i] < files[i].n]
            if pres:
                p_all, r_all = np.concatenate(pres), np.concatenate(recs)
                del pres, recs
                order = np.argsort(p_all, kind="stable")  # ties: the earlier input first
                emit(p_all[order], r_all[order], not live)
                del p_all, r_all, order
        if not total:
            emit(np.zeros(0, "<u8"), np.zeros(0, REC_DTYPE), True)
        assert done == total
        header = _HEADER.pack(MAGIC, len(sources), len(ptab), total, BLOCK, digest)
        meta = b"".join([header, b"".join(bytes.fromhex(s) for s in sources),
                         np.ascontiguousarray(ptab).tobytes(), fence.tobytes(), bytes(sums)])
        assert len(meta) == meta_len
        os.pwrite(fd, meta + blake3.blake3(meta).digest(), 0)
        if tmp is None:
            out.flush()
            return CompactFile(Path("<memory>" + SUFFIX), sources, anonymous=out)
        os.fsync(fd)
        out.close()
        path = directory / (digest.hex() + SUFFIX)  # type: ignore[operator]
        os.replace(tmp, path)
        _sync_dir(directory)  # type: ignore[arg-type]
        return CompactFile(path, sources)
    finally:
        out.close()  # an open mapping keeps an unnamed file alive
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()  # gone already when it was renamed


def _pwrite_all(fd: int, data: Any, off: int) -> None:
    """All of DATA (a byte view) at OFF: ``pwrite`` may write less than asked."""
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view, off)
        if n <= 0:  # never for a regular file (a full disk raises ENOSPC): no spin
            raise OSError(errno.ENOSPC, "wrote nothing")
        view, off = view[n:], off + n


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # the rename's directory entry (best effort)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _blocks(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK


def read_sources(path: Path) -> list[str] | None:
    """The source names a file claims (from its header alone: cheap, unchecked -- only
    ``open_file`` checks), or None when it has no readable header."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            if len(head) != _HEADER.size:
                return None
            magic, ns, _np, _n, _blk, _digest = _HEADER.unpack(head)
            if magic != MAGIC:
                return None
            raw = f.read(ns * 32)
    except OSError:
        return None
    if len(raw) != ns * 32:
        return None
    return [raw[i:i + 32].hex() for i in range(0, len(raw), 32)]


class CompactFile:
    """An open, checked compact index file (see the module docstring)."""

    def __init__(self, path: Path, expect: Iterable[str] | None = None,
                 anonymous: BinaryIO | None = None) -> None:
        """Open ``path`` -- or, with ``anonymous``, that unnamed file (``path`` is then
        only a label)."""
        self.path = path
        self.anonymous = anonymous is not None
        try:
            with contextlib.nullcontext(anonymous) if anonymous else open(path, "rb") as f:
                f.seek(0)
                size = os.fstat(f.fileno()).st_size
                head = f.read(_HEADER.size)
                if len(head) != _HEADER.size:
                    raise CacheDamaged(f"{path.name}: truncated header")
                magic, ns, npk, n, blk, digest = _HEADER.unpack(head)
                if magic != MAGIC or blk != BLOCK:
                    raise CacheDamaged(f"{path.name}: not a compact index of this version")
                nb = _blocks(n)
                meta_len = _HEADER.size + ns * 32 + npk * 48 + nb * (8 + _SUM)
                if size != meta_len + 32 + n * 56:
                    raise CacheDamaged(f"{path.name}: length {size} does not match its header")
                meta = head + f.read(meta_len - _HEADER.size)
                if blake3.blake3(meta).digest() != f.read(32):
                    raise CacheDamaged(f"{path.name}: header checksum mismatch")
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
                # lookups read through this (its own descriptor: the caller may close F)
                self._file = os.fdopen(os.dup(f.fileno()), "rb", buffering=0)
        except OSError as e:
            raise CacheDamaged(f"{path.name}: {e}") from None
        off = _HEADER.size
        self.sources = [meta[i:i + 32].hex() for i in range(off, off + ns * 32, 32)]
        if sources_digest(self.sources) != digest or (
                not self.anonymous and path.name != digest.hex() + SUFFIX):
            raise CacheDamaged(f"{path.name}: its sources do not hash to its name")
        if expect is not None and sources_digest(expect) != digest:
            raise CacheDamaged(f"{path.name}: built from another set of index objects")
        off += ns * 32
        self._meta = meta
        self._packs_off, self.n_packs = off, npk
        off += npk * 48
        self._fence = memoryview(meta)[off:off + nb * 8].cast("Q").tolist()
        off += nb * 8
        self._sums = meta[off:off + nb * _SUM]
        self.n: int = n
        self._pre_off = meta_len + 32
        self._rec_off = self._pre_off + n * 8
        self._checked = bytearray(nb)
        self._resident: memoryview | None = None  # the prefixes, once ``hold_prefixes``
        self.excluded = bytearray(npk)  # replaced whole by set_excluded
        self._names = _PackNames(meta, self._packs_off, npk)

    def close(self) -> None:
        self._file.close()
        if self._mm is not None:
            self._mm.close()

    def __len__(self) -> int:
        return self.n

    # ----- packs --------------------------------------------------------------------

    def pack(self, no: int) -> tuple[str, str, int]:
        """(name, kind, size) of pack number ``no``."""
        raw, size, kind = _PACK.unpack_from(self._meta, self._packs_off + no * 48)
        return raw.hex(), KINDS[kind], size

    def pack_no(self, name: str) -> int | None:
        raw = bytes.fromhex(name)
        i = bisect.bisect_left(self._names, raw)
        return i if i < self.n_packs and self._names[i] == raw else None

    def set_excluded(self, names: Iterable[str]) -> None:
        ex = bytearray(self.n_packs)
        for name in names:
            no = self.pack_no(name)
            if no is not None:
                ex[no] = 1
        self.excluded = ex

    # ----- lookups ------------------------------------------------------------------

    def _read(self, off: int, n: int) -> bytes:
        """N bytes at OFF, read (not mapped); ``CacheDamaged`` when the file no longer
        has them (truncated under us) or cannot be read."""
        try:
            got = os.pread(self._file.fileno(), n, off)
        except (OSError, ValueError) as e:  # ValueError: closed
            raise CacheDamaged(f"{self.path.name}: {e}") from None
        if len(got) != n:
            raise CacheDamaged(f"{self.path.name}: truncated (read {len(got)} of {n} "
                               f"bytes at {off})")
        return got

    def hold_prefixes(self) -> None:
        """Check every block, then keep the prefix column in memory (8 B a record): a
        lookup of an absent id then makes no system call, one of a present id one. For
        this process's own spilled files, whose lookups are a backup's dedup checks."""
        self.check_all()
        self._resident = memoryview(self._read(self._pre_off, self.n * 8)).cast("Q")

    def _check_block(self, b: int) -> None:
        lo, hi = b * BLOCK, min((b + 1) * BLOCK, self.n)
        h = blake3.blake3(self._read(self._pre_off + lo * 8, (hi - lo) * 8))
        h.update(self._read(self._rec_off + lo * 48, (hi - lo) * 48))
        if h.digest()[:_SUM] != self._sums[b * _SUM:(b + 1) * _SUM]:
            raise CacheDamaged(f"{self.path.name}: block {b} checksum mismatch")
        self._checked[b] = 1

    def _span(self, p: int) -> tuple[int, memoryview, int]:
        """(LO, the prefixes from record LO to the end of the blocks the fence says may
        hold ``p``, read, and the index in them of the first one >= ``p``); the blocks
        are checked first. (Interpolating the position from the fence and reading 768 B
        around it instead of the block's 8 KiB was measured no faster: a ``pread`` costs
        its ~3 us system call, whatever its size up to a few KiB.)"""
        if self._resident is not None:
            return 0, self._resident, bisect.bisect_left(self._resident, p)
        fence = self._fence
        b0 = max(bisect.bisect_left(fence, p) - 1, 0)
        b1 = bisect.bisect_right(fence, p)
        for b in range(b0, b1):
            if not self._checked[b]:
                self._check_block(b)
        lo, hi = b0 * BLOCK, min(b1 * BLOCK, self.n)
        pre = memoryview(self._read(self._pre_off + lo * 8, (hi - lo) * 8)).cast("Q")
        return lo, pre, bisect.bisect_left(pre, p)

    def contains(self, blob_id: bytes) -> bool:
        """Whether a copy of ``blob_id`` is in a pack not excluded: ``find`` without
        building its answer (a dedup check needs only this)."""
        if not self.n or len(blob_id) != 32:
            return False
        p = int.from_bytes(blob_id[:8], "big")
        lo, pre, i = self._span(p)
        excluded, rest = self.excluded, blob_id[8:]
        while i < len(pre) and pre[i] == p:
            r = self._read(self._rec_off + (lo + i) * 48, 28)
            if r[:24] == rest:
                pack = _U32.unpack_from(r, 24)[0]
                if pack < len(excluded) and not excluded[pack]:
                    return True
            i += 1
        return False

    def contains_many(self, blob_ids: list[bytes]) -> list[bool]:
        """``[self.contains(b) for b in blob_ids]`` in a few reads: the ids are taken in
        prefix order, in runs whose fence ranges touch (at most ``_RUN_BLOCKS`` blocks a
        run); a run costs one read of its prefixes and, for its candidates (ids whose
        prefix is there), one read of the records between them when they lie close
        (``_match``): a re-backup's check of its whole directory cache reads ~2 times
        per touched block, not 2 times per id. Per id only a bisect and a compare."""
        out = [False] * len(blob_ids)
        if not self.n:
            return out
        order = sorted((int.from_bytes(b[:8], "big"), k)
                       for k, b in enumerate(blob_ids) if len(b) == 32)
        qps = [p for p, _ in order]
        nq, nb, fence = len(qps), _blocks(self.n), self._fence

        def upto(b1: int, j: int) -> int:  # the first query at or past block B1
            return nq if b1 >= nb else bisect.bisect_left(qps, fence[b1], j)

        j = 0
        while j < nq:
            if self._resident is not None:
                lo, pre, j1 = 0, self._resident, nq
            else:
                b0, b1 = self._range(qps[j])
                j1 = upto(b1, j)
                while j1 < nq:  # the next query's blocks touch these: one read for both
                    c0, c1 = self._range(qps[j1])
                    if c0 > b1 or c1 - b0 > _RUN_BLOCKS:
                        break
                    b1 = max(b1, c1)
                    j1 = upto(b1, j1)
                for b in range(b0, b1):
                    if not self._checked[b]:
                        self._check_block(b)
                lo = b0 * BLOCK
                pre = memoryview(self._read(self._pre_off + lo * 8,
                                            (min(b1 * BLOCK, self.n) - lo) * 8)).cast("Q")
            cands: list[tuple[int, int]] = []  # (record position in PRE, query k)
            bl, npre = bisect.bisect_left, len(pre)
            for q in range(j, j1):
                p = qps[q]
                i = bl(pre, p)
                while i < npre and pre[i] == p:
                    cands.append((i, order[q][1]))
                    i += 1
            if cands:
                self._match(blob_ids, lo, sorted(cands), out)
            j = j1
        return out

    def _range(self, p: int) -> tuple[int, int]:
        """The blocks [B0, B1) the fence says may hold prefix P (as ``_span``)."""
        fence = self._fence
        return max(bisect.bisect_left(fence, p) - 1, 0), bisect.bisect_right(fence, p)

    def _match(self, blob_ids: list[bytes], lo: int, cands: list[tuple[int, int]],
               out: list[bool]) -> None:
        """Set ``out[k]`` for each candidate (record LO + I, query K; sorted) that is the
        id in a pack not excluded. Candidates within ``_SPAN_RECS`` records of each
        other are read in one piece when they are at least 1 in 64 of it, else one
        record read each."""
        excluded = self.excluded
        n_ex = len(excluded)
        c = 0
        while c < len(cands):
            first = cands[c][0]
            e = c + 1
            while e < len(cands) and cands[e][0] - first < _SPAN_RECS:
                e += 1
            span = cands[e - 1][0] - first + 1
            if span <= 64 * (e - c):
                recs = self._read(self._rec_off + (lo + first) * 48, span * 48)
            else:
                e, recs = c + 1, self._read(self._rec_off + (lo + first) * 48, 28)
            for i, k in cands[c:e]:
                at = (i - first) * 48
                if not out[k] and recs[at:at + 24] == blob_ids[k][8:]:
                    pack = _U32.unpack_from(recs, at + 24)[0]
                    if pack < n_ex and not excluded[pack]:
                        out[k] = True
            c = e

    def find(self, blob_id: bytes) -> tuple[str, PackEntry] | None:
        """(pack name, entry) of a copy of ``blob_id`` in a pack not excluded, or None."""
        if not self.n or len(blob_id) != 32:
            return None
        p = int.from_bytes(blob_id[:8], "big")
        lo, pre, i = self._span(p)
        excluded, rest = self.excluded, blob_id[8:]
        while i < len(pre) and pre[i] == p:
            r, pack, length, offset, raw = _REC.unpack(
                self._read(self._rec_off + (lo + i) * 48, 48))
            if r == rest and pack < len(excluded) and not excluded[pack]:
                name, kind, _size = self.pack(pack)
                return name, PackEntry(kind, blob_id, offset, length, raw)
            i += 1
        return None

    # ----- column views (whole-store passes: store/blobtable.py) --------------------

    def check_all(self) -> None:
        """Check every block against its sum now (CacheDamaged on a mismatch), so the
        views below never meet an unchecked block. It reads (``pread``) and maps
        nothing, so it holds none of the file resident (a check through the mapping held
        all 560 MiB of a 10M-record file: gc's and verify's peak RSS before)."""
        for b in range(_blocks(self.n)):
            if not self._checked[b]:
                self._check_block(b)

    def prefix_view(self, lo: int = 0, hi: int | None = None) -> np.ndarray[Any, Any]:
        """Prefixes ``lo:hi`` as a read-only view of the mapping (no copy); only after
        ``check_all``."""
        hi = self.n if hi is None else hi
        assert all(self._checked[lo // BLOCK:_blocks(hi)]), "check_all first"
        out: np.ndarray[Any, Any] = (
            _numpy().zeros(0, "<u8") if self._mm is None or hi <= lo
            else _numpy().frombuffer(self._mm, "<u8", hi - lo, self._pre_off + lo * 8))
        return out

    def record_view(self, lo: int = 0, hi: int | None = None) -> np.ndarray[Any, Any]:
        """Records ``lo:hi`` (rest, pack, length, offset, raw) as a read-only view of the
        mapping; only after ``check_all``."""
        hi = self.n if hi is None else hi
        assert all(self._checked[lo // BLOCK:_blocks(hi)]), "check_all first"
        out: np.ndarray[Any, Any] = (
            _numpy().zeros(0, _dtypes()[1]) if self._mm is None or hi <= lo
            else _numpy().frombuffer(self._mm, _dtypes()[1], hi - lo, self._rec_off + lo * 48))
        return out

    def drop_pages(self) -> None:
        """Drop the mapping's pages from this process's RSS (they stay in the page cache)."""
        if self._mm is not None:
            self._mm.madvise(mmap.MADV_DONTNEED)

    # ----- whole-file reads (merging, materializing) --------------------------------

    def columns(self) -> Columns:
        """Every record, checked block by block (CacheDamaged on a mismatch)."""
        np = _numpy()
        PACK_DTYPE, REC_DTYPE = _dtypes()
        for b in range(_blocks(self.n)):
            if not self._checked[b]:
                self._check_block(b)
        packs = np.frombuffer(self._meta, PACK_DTYPE, self.n_packs, self._packs_off).copy()
        if packs.size and int(packs["kind"].max()) >= len(KINDS):
            raise CacheDamaged(f"{self.path.name}: a pack of unknown kind")
        if self._mm is None or not self.n:
            return Columns(list(self.sources), packs, np.zeros(0, "<u8"),
                           np.zeros(0, REC_DTYPE))
        return Columns(list(self.sources), packs, self.prefixes(0, self.n),
                       self.records(0, self.n))

    def pack_table(self) -> np.ndarray[Any, Any]:
        """A copy of the pack table (name V32, size, kind; sorted by name; 48 B per pack),
        checked for unknown kinds."""
        npm = _numpy()
        PACK_DTYPE, _ = _dtypes()
        packs: np.ndarray[Any, Any] = npm.frombuffer(self._meta, PACK_DTYPE, self.n_packs,
                                                    self._packs_off).copy()
        if packs.size and int(packs["kind"].max()) >= len(KINDS):
            raise CacheDamaged(f"{self.path.name}: a pack of unknown kind")
        return packs

    def _check_range(self, lo: int, hi: int) -> None:
        for b in range(lo // BLOCK, _blocks(hi)):
            if not self._checked[b]:
                self._check_block(b)

    def _read_into(self, out: np.ndarray[Any, Any], off: int) -> np.ndarray[Any, Any]:
        """OUT filled from the bytes at OFF (``preadv``: no mapping, no second copy);
        ``CacheDamaged`` when the file no longer has them."""
        view = memoryview(out.view(_numpy().uint8))
        done = 0
        while done < len(view):
            try:
                got = os.preadv(self._file.fileno(), [view[done:]], off + done)
            except (OSError, ValueError) as e:
                raise CacheDamaged(f"{self.path.name}: {e}") from None
            if got <= 0:
                raise CacheDamaged(f"{self.path.name}: truncated at {off + done}")
            done += got
        return out

    def prefixes(self, lo: int, hi: int) -> np.ndarray[Any, Any]:
        """Prefixes LO..HI, checked, read into a new array (a merge's window: it maps
        nothing, so the inputs' pages never count in this process's RSS)."""
        self._check_range(lo, hi)
        return self._read_into(_numpy().empty(max(hi - lo, 0), "<u8"), self._pre_off + lo * 8)

    def records(self, lo: int, hi: int) -> np.ndarray[Any, Any]:
        """Records LO..HI, checked, read into a new (writable) array."""
        _, REC_DTYPE = _dtypes()
        self._check_range(lo, hi)
        rec = self._read_into(_numpy().empty(max(hi - lo, 0), REC_DTYPE),
                              self._rec_off + lo * 48)
        if len(rec) and int(rec["pack"].max()) >= self.n_packs:
            raise CacheDamaged(f"{self.path.name}: a record names no pack")
        return rec

    def count_kept(self, keep: np.ndarray[Any, Any]) -> int:
        """How many records name a pack whose ``keep`` flag is set (read in windows)."""
        np = _numpy()
        counts = np.zeros(self.n_packs, np.int64)
        for lo in range(0, self.n, MERGE_WINDOW):
            hi = min(self.n, lo + MERGE_WINDOW)
            counts += np.bincount(self.records(lo, hi)["pack"], minlength=self.n_packs)
        return int(counts[keep].sum())

    def iter_packs(self) -> Iterator[tuple[str, str, int, list[PackEntry]]]:
        """``(name, kind, size, entries)`` of every pack, excluded ones too."""
        np = _numpy()
        cols = self.columns()
        order = np.argsort(cols.records["pack"], kind="stable")
        packno = cols.records["pack"][order]
        bounds = np.searchsorted(packno, np.arange(len(cols.packs) + 1))
        raw = np.empty((len(order), 32), np.uint8)
        raw[:, :8] = cols.prefixes[order].astype(">u8").view(np.uint8).reshape(-1, 8)
        raw[:, 8:] = cols.records["rest"][order].view(np.uint8).reshape(-1, 24)
        recs = cols.records[order]
        for no in range(len(cols.packs)):
            kind = KINDS[int(cols.packs["kind"][no])]
            s, e = int(bounds[no]), int(bounds[no + 1])
            entries = [PackEntry(kind, raw[k].tobytes(), int(recs["offset"][k]),
                                 int(recs["length"][k]), int(recs["raw"][k]))
                       for k in range(s, e)]
            yield (bytes(cols.packs["name"][no]).hex(), kind, int(cols.packs["size"][no]),
                   entries)


class _PackNames:
    """The sorted raw pack names of a file's pack table, as a sequence for ``bisect``."""

    def __init__(self, meta: bytes, off: int, n: int) -> None:
        self._meta, self._off, self._n = meta, off, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> bytes:
        if not 0 <= i < self._n:
            raise IndexError(i)
        o = self._off + i * 48
        return self._meta[o:o + 32]
