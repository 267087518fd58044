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
  which re-reads files whose blobs are gone).
- The cache is a shortcut to the bits the full comparison stores, never a source of truth:
  deleting it changes no snapshot (tests/integration/test_dircache.py).
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

import msgpack

from .. import __version__
from ..faults import crash_point
from ..ids import ID_LEN

_TEMP_AGE = 3600.0  # seconds before a temporary file is taken for a crash's leftover
RACY_NS = 2_000_000_000  # the coarsest timestamp granularity a source may have (FAT: 2 s)
_MAGIC = b"casbackup-dircache\x00\x01"
_SUM = 32  # BLAKE2b-256 of the body, after the magic
_ENTRY = struct.Struct("<IQQQIIqQqq")


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
    h = hashlib.blake2b(struct.pack("<QQ", dev, ino), digest_size=32)
    pack = _ENTRY.pack
    for name, st in entries:
        h.update(struct.pack("<I", len(name)))
        h.update(name)
        h.update(pack(st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                      st.st_size, st.st_rdev, st.st_mtime_ns, st.st_ctime_ns))
    return h.digest()


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

    def racy(self, st: os.stat_result) -> bool:
        return max(st.st_mtime_ns, st.st_ctime_ns) >= self.start_ns - RACY_NS

    def write(self, snapshot_id: str, now_ns: int) -> None:
        """Replace the file by this backup's records (atomically; errors are ignored: a
        missing cache only costs the next backup its shortcut)."""
        body = msgpack.packb([self.header, snapshot_id, now_ns,
                              [[d, r.subtree, r.blobs, [list(s) for s in r.subdirs]]
                               for d, r in self.new.items()]], use_bin_type=True)
        data = _MAGIC + hashlib.blake2b(body, digest_size=_SUM).digest() + body
        tmp = self.path.with_name(f"{self.path.name}.{os.urandom(8).hex()}.tmp")  # (threads)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_bytes(data)
            _sweep(self.path.parent, tmp.stat().st_mtime - _TEMP_AGE)
            crash_point("dircache:before-rename")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


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
        data = dc.path.read_bytes()
    except OSError:
        return dc
    old = _decode(data, head, parent_id, dc.start_ns)
    if old is None:
        if warn is not None:
            warn(f"directory cache {name[:16]} is damaged; it is rebuilt by this backup")
        return dc
    dc.old = old
    return dc


def _decode(data: bytes, head: bytes, parent_id: str, start_ns: int,
            ) -> dict[bytes, DirRecord] | None:
    """The records of DATA if it is for HEAD and PARENT_ID and was written no later than
    START_NS; {} when it is intact but for something else; None when damaged."""
    if not data.startswith(_MAGIC):
        return None
    body = data[len(_MAGIC) + _SUM:]
    if hashlib.blake2b(body, digest_size=_SUM).digest() != data[len(_MAGIC):len(_MAGIC) + _SUM]:
        return None
    try:
        fhead, snap, written, rows = msgpack.unpackb(body, raw=False, use_list=True)
        if fhead != head or snap != parent_id or not isinstance(written, int) or (
                written > start_ns):
            return {}
        out: dict[bytes, DirRecord] = {}
        for d, sub, blobs, subdirs in rows:
            if not (isinstance(d, bytes) and isinstance(sub, bytes) and len(sub) == ID_LEN
                    and isinstance(blobs, bytes) and len(blobs) % ID_LEN == 0):
                return None
            subs = tuple((bytes(n), bytes(t)) for n, t in subdirs)
            if any(len(t) != ID_LEN for _, t in subs):
                return None
            out[d] = DirRecord(sub, blobs, subs)
        return out
    except (ValueError, TypeError, msgpack.UnpackException):
        return None




