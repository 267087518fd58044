"""The directory cache: an unchanged directory's tree id without decoding its parent tree.

An unchanged re-backup used to spend half its CPU reading and decoding the parent
snapshot's tree of every directory, only to find each entry equal to its node. This cache,
one file in the store's cache directory per (machine, host, source paths, backup options),
maps a **listing digest** of a directory to what its last backup stored for it: the tree
id, the data blob ids its files reference and its subdirectories' tree ids. The digest is
a BLAKE2b-256 of the directory's own (device, inode) and, for every name ``listdir`` gives,
the name and its lstat (mode, inode, device, link count, owner, group, size, rdev,
mtime_ns, ctime_ns). A directory whose digest is in the cache is walked (its entries are
still lstat-ed, its subdirectories still entered) but its files are not compared with
node maps; when every subdirectory then has the tree id recorded for it, the directory's
tree id is the recorded one, else the recorded tree is decoded once and its file maps
reused beside the new subdirectory nodes (archiver.py).

Invariants (each is a reason a backup could otherwise skip changed content):
- The file is used only for the parent snapshot it was written after (its id is in the
  file), by the same machine (``/etc/machine-id``), host name, casbackup version, source
  paths and exclusion/one-file-system options (all in the header whose digest names the
  file); anything else, or a file that does not pass its BLAKE2b check or decode, means
  no cache for this backup (a damaged file is warned about), never a wrong entry.
- Racy entries (the racy-git rule): a directory is recorded only when none of its entries
  has an mtime or ctime later than ``start - RACY_NS`` (the backup's start by its clock,
  less 2 s of timestamp granularity), none was unreadable or changed while read; so a file
  changed after it was looked at, within one timestamp tick, is compared afresh next time.
- A clock set back: the file records when it was written; a backup whose clock is earlier
  does not use it (and entries with times in its future are racy by the rule above).
- An entry is used only when its tree id and every blob id it lists are in the index
  (after ``repair`` or a gc beside us, the directory is compared against its parent tree,
  which re-reads files whose blobs are gone): ``keep_indexed`` drops the others before
  the walk, in batches.
- The cache is a shortcut to the bits the full comparison stores, never a source of truth:
  deleting it changes no snapshot (tests/integration/test_dircache.py).
- Memory: the records (``old`` during the walk, ``new`` growing; a kept directory's
  blob ids are one bytes object shared by both) are all that is held; the file is
  written one packed row at a time and read ``_CHUNK`` bytes at a time, each hashed as
  it goes, in the same bytes as one ``packb`` of the body (so an older casbackup reads
  this one's files and the reverse); records decoded before the checksum is found wrong
  are dropped, never used (tests/unit/ops/test_dircache_stream.py).
- A file is written to ``<name>.<random>.tmp`` and renamed into place, so a reader sees a
  whole file or the previous one; a crash between (crash point ``dircache:before-rename``)
  leaves the temporary file, which a later write removes once it is an hour older than
  the write's own temporary file (the filesystem's clock: a fresh one may be another
  backup's write in progress) (tests/attack/test_dircache_attacks.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgpack

from .. import __version__
from ..faults import crash_point
from ..ids import ID_LEN

_TEMP_AGE = 3600.0  # seconds before a temporary file is taken for a crash's leftover
RACY_NS = 2_000_000_000  # the coarsest timestamp granularity a source may have (FAT: 2 s)
_MAGIC = b"casbackup-dircache\x00\x01"
_SUM = 32  # BLAKE2b-256 of the body, after the magic
_ENTRY = struct.Struct("<IQQQIIqQqq")
_LEN = struct.Struct("<I")
_CHUNK = 1 << 18  # bytes of the file read (and hashed) at a time
_CHECK_IDS = 1 << 16  # ids a batch of ``keep_indexed`` asks the index about (~5 MB)


def machine_id() -> str:
    """This machine's id (systemd's ``/etc/machine-id``, or D-Bus's), '' if it has none."""
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(p, encoding="ascii", errors="replace") as f:
                return f.read().strip()
        except OSError:
            continue
    return ""


def listing_digest(dev: int, ino: int, entries: list[tuple[bytes, os.stat_result]]) -> bytes:
    """The digest of the directory (DEV, INO) listing ENTRIES (name, lstat), in order."""
    return digest_and_racy(dev, ino, entries, None)[0]


def digest_and_racy(dev: int, ino: int, entries: list[tuple[bytes, os.stat_result]],
                    racy_from: int | None) -> tuple[bytes, bool]:
    """``listing_digest`` and whether an entry's mtime or ctime is RACY_FROM or later
    (``DirCache.racy``; None: never), in one pass: the bytes hashed are built in a list
    and hashed once (the same bytes as one update per field)."""
    pack, plen = _ENTRY.pack, _LEN.pack
    parts = [struct.pack("<QQ", dev, ino)]
    put = parts.append
    racy = False
    for name, st in entries:
        put(plen(len(name)))
        put(name)
        m, c = st.st_mtime_ns, st.st_ctime_ns
        put(pack(st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                 st.st_size, st.st_rdev, m, c))
        if racy_from is not None and (m >= racy_from or c >= racy_from):
            racy = True
    return hashlib.blake2b(b"".join(parts), digest_size=32).digest(), racy


@dataclass(frozen=True, slots=True)
class DirRecord:
    """What the last backup stored for a directory: its tree id, the data blobs of its
    files (concatenated ids) and its subdirectories' (name, tree id) in name order."""

    subtree: bytes
    blobs: bytes
    subdirs: tuple[tuple[bytes, bytes], ...]

    def blob_ids(self) -> list[bytes]:
        b = self.blobs
        return [b[i:i + ID_LEN] for i in range(0, len(b), ID_LEN)]


@dataclass
class DirCache:
    """The records of one cache file (``old``: read, for this backup) and the records of
    the backup being made (``new``: written after its snapshot)."""

    path: Path
    header: bytes
    start_ns: int
    old: dict[bytes, DirRecord] = field(default_factory=dict)
    new: dict[bytes, DirRecord] = field(default_factory=dict)

    def keep_indexed(self, contains_many: Callable[[list[bytes]], list[bool]]) -> None:
        """Drop the old records that name a tree or blob id CONTAINS_MANY (the index's
        batch check) says is missing: asked ``_CHECK_IDS`` ids at a time, once before
        the walk, instead of one lookup per id as each directory is entered. (The same
        answers: the index's exclusions are fixed from the session's start to its
        commit check, DESIGN §8 W1/W2, and it only gains entries meanwhile.)"""
        drop: set[bytes] = set()
        ids: list[bytes] = []
        owners: list[bytes] = []  # the digest of the record each id is from

        def ask() -> None:
            drop.update(d for d, ok in zip(owners, contains_many(ids), strict=True)
                        if not ok)
            ids.clear()
            owners.clear()

        for d, r in self.old.items():
            ids.append(r.subtree)
            ids.extend(r.blob_ids())
            owners.extend([d] * (len(r.blobs) // ID_LEN + 1))
            if len(ids) >= _CHECK_IDS:
                ask()
        if ids:
            ask()
        for d in drop:
            del self.old[d]

    def racy(self, st: os.stat_result) -> bool:
        return max(st.st_mtime_ns, st.st_ctime_ns) >= self.racy_from

    @property
    def racy_from(self) -> int:
        """An entry with an mtime or ctime this or later is racy (``racy``)."""
        return self.start_ns - RACY_NS

    def write(self, snapshot_id: str, now_ns: int) -> None:
        """Replace the file by this backup's records (atomically; errors are ignored: a
        missing cache only costs the next backup its shortcut). The body is packed and
        hashed one row at a time into the temporary file (its checksum written last,
        in front of it): no copy of the whole body is held."""
        self.old = {}  # (the walk is over; a kept record's blobs are shared with new)
        tmp = self.path.with_name(f"{self.path.name}.{os.urandom(8).hex()}.tmp")  # (threads)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                _write_body(f, [self.header, snapshot_id, now_ns], self.new)
            _sweep(self.path.parent, tmp.stat().st_mtime - _TEMP_AGE)
            crash_point("dircache:before-rename")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _write_body(f: BinaryIO, head: list[object], rows: dict[bytes, DirRecord]) -> None:
    """Write the magic, the checksum and the body ``msgpack([*HEAD, [row...]])`` to F, the
    body one row at a time (F buffers); the same bytes as one ``packb`` of it."""
    h = hashlib.blake2b(digest_size=_SUM)
    f.write(_MAGIC + bytes(_SUM))
    pk = msgpack.Packer(use_bin_type=True)

    def put(piece: bytes) -> None:
        h.update(piece)
        f.write(piece)

    put(pk.pack_array_header(len(head) + 1))
    for x in head:
        put(pk.pack(x))
    put(pk.pack_array_header(len(rows)))
    for d, r in rows.items():
        put(pk.pack([d, r.subtree, r.blobs, [list(s) for s in r.subdirs]]))
    f.seek(len(_MAGIC))
    f.write(h.digest())


def _sweep(directory: Path, before: float) -> None:
    """Remove the temporary files in DIRECTORY last written before BEFORE (a crash's)."""
    for e in os.scandir(directory):
        with contextlib.suppress(OSError):
            if e.name.endswith(".tmp") and e.stat(follow_symlinks=False).st_mtime < before:
                os.unlink(e.path)


def header(host: str, paths: list[str], options: bytes) -> bytes:
    # paths as bytes: a source path need not be UTF-8 (a latin-1 "caf\xe9")
    return bytes(msgpack.packb([__version__, machine_id(), host, socket.gethostname(),
                                sorted(os.fsencode(p) for p in paths), options],
                               use_bin_type=True))


def open_cache(cache_dir: Path | None, host: str, paths: list[str], options: bytes,
               parent_id: str | None, now: float,
               warn: Callable[[str], None] | None = None) -> DirCache | None:
    """The directory cache of a backup starting at NOW (its clock) of PATHS with OPTIONS
    (the exclusion fingerprint), its old records usable only after PARENT_ID; None when
    there is no cache directory."""
    if cache_dir is None:
        return None
    head = header(host, paths, options)
    name = hashlib.blake2b(head, digest_size=16).hexdigest()
    dc = DirCache(cache_dir / "dirs" / name, head, int(now * 1e9))
    if parent_id is None:
        return dc
    try:
        with open(dc.path, "rb") as f:
            old = _decode(f, head, parent_id, dc.start_ns)
    except OSError:
        return dc
    if old is None:
        if warn is not None:
            warn(f"directory cache {name[:16]} is damaged; it is rebuilt by this backup")
        return dc
    dc.old = old
    return dc


class _Hashed:
    """A reader of F that feeds what it returns to a BLAKE2b (the body's checksum)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.h = hashlib.blake2b(digest_size=_SUM)

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.h.update(b)
        return b


def _decode(f: BinaryIO, head: bytes, parent_id: str, start_ns: int,
            ) -> dict[bytes, DirRecord] | None:
    """The records of the file F if it is for HEAD and PARENT_ID and was written no later
    than START_NS; {} when it is intact but for something else; None when damaged. The
    body is read and hashed ``_CHUNK`` bytes at a time (never whole in memory); records
    decoded before the checksum is found wrong are dropped."""
    if f.read(len(_MAGIC)) != _MAGIC:
        return None
    want = f.read(_SUM)
    size = os.fstat(f.fileno()).st_size
    src = _Hashed(f)
    # (a row's blob list may be as large as the file: the unpacker's limits must allow it)
    up = msgpack.Unpacker(src, raw=False, use_list=True, read_size=_CHUNK,
                          max_buffer_size=max(size, _CHUNK))
    out: dict[bytes, DirRecord] | None = None  # (None: the body ended early)
    try:
        if up.read_array_header() != 4:
            return None
        fhead, snap, written = up.unpack(), up.unpack(), up.unpack()
        if fhead != head or snap != parent_id or not isinstance(written, int) or (
                written > start_ns):
            out = {}  # (intact but for something else: the checksum still decides)
            up.skip()
        else:
            out = _rows(up)
        up.unpack()  # trailing bytes: damaged
        return None
    except msgpack.OutOfData:
        pass  # the end of the file, where it must be
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    while src.read(_CHUNK):
        pass
    return out if out is not None and src.h.digest() == want else None


def _rows(up: msgpack.Unpacker) -> dict[bytes, DirRecord]:
    """The rows array next in UP (ValueError when a row is not a record)."""
    out: dict[bytes, DirRecord] = {}
    for _ in range(up.read_array_header()):
        row = up.unpack()
        if not (isinstance(row, list) and len(row) == 4):
            raise ValueError("a row is not four fields")
        d, sub, blobs, subdirs = row
        if not (isinstance(d, bytes) and isinstance(sub, bytes) and len(sub) == ID_LEN
                and isinstance(blobs, bytes) and len(blobs) % ID_LEN == 0):
            raise ValueError("a row's fields are not ids")
        subs = tuple((bytes(n), bytes(t)) for n, t in subdirs)
        if any(len(t) != ID_LEN for _, t in subs):
            raise ValueError("a subdirectory's tree id is not an id")
        out[d] = DirRecord(sub, blobs, subs)
    return out
