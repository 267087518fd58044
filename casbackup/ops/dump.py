"""dump: a file of a snapshot as its bytes, a directory as a tar (PAX) or zip stream.

- A file is written as its content, blob after blob (``Store.iter_blobs``: a few blobs in
  memory at a time, whatever the file's size).
- A directory is a tar archive (PAX, Python's ``tarfile`` in stream mode) of everything
  below it: modes (setuid/setgid/sticky too), uid/gid and user/group names, mtimes to the
  nanosecond (a PAX ``mtime`` record), symlinks, hard links (entries sharing a device and
  inode with nlink > 1: the first is the file, the rest link to it), xattrs as
  ``SCHILY.xattr.*`` records (GNU tar and bsdtar restore them), FIFOs and device nodes;
  or a zip archive (files, directories and symlinks with their modes and mtimes, as
  Info-ZIP stores them; hard links become copies).
- Member names are the entries' paths relative to the dump's root: the snapshot's root,
  or PATH of a ``SNAP:PATH`` reference (restic's ``dump``): ``dump latest /home/me`` gives
  ``home/me/...``, ``dump latest:/home/me /`` gives ``...``.

Invariants: names come from validated trees (``model.tree``: one safe component each, never
``..``, ``/`` or empty), so no member is absolute or climbs out of the extraction directory.
With ``--strip-components`` two entries stripped to one member name are refused
(``UsageError``, exit 2) by a first walk of the trees, before anything is written.
Before a file's header is written its content's length is checked against the index
(``IntegrityError`` naming the path if they differ), so a damaged store never yields an
archive whose sizes lie. What an archive format cannot hold (sockets in tar; devices,
FIFOs and names that are not UTF-8 in zip) is left out with a warning naming it. Only
tree and data blobs are read, through the store's public read path, under a shared lock
(as restore: gc waits, backups go on).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from ..errors import IntegrityError, UsageError
from ..model.fields import show
from ..model.snapshot import Snapshot
from ..model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK, Node
from ..store import Store
from ..store.locks import shared_lock
from .snapsel import join_paths, locate, st_mode
from .strip import check_strip, check_unique, strip_components
from .treewalk import uncached, walk

ARCHIVES = ("tar", "zip")
_BLOCK = 1 << 20


@dataclass(slots=True)
class DumpResult:
    path: bytes  # the dumped entry's path in the snapshot
    archive: str | None  # None when a file's bytes were written
    entries: int = 0
    bytes: int = 0  # file content written
    skipped: list[str] = field(default_factory=list)


class _Chunks(io.RawIOBase):
    """A file's content as a readable stream (what ``tarfile.addfile`` copies from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf = memoryview(nxt)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Writer(Protocol):
    links: bool  # whether the format holds hard links (else each is a copy)

    def entry(self, name: str, node: Node, content: Iterator[bytes] | None,
              link_to: str | None) -> str | None:
        """Add one member; a reason when the format cannot hold it (it is left out)."""

    def close(self) -> None: ...

    def abandon(self) -> None: ...


def _pax_time(ns: int) -> str:
    sign, a = ("-" if ns < 0 else ""), abs(ns)
    return f"{sign}{a // 10**9}.{a % 10**9:09d}"


class _Tar:
    links = True

    def __init__(self, out: BinaryIO) -> None:
        self.tar = tarfile.open(  # noqa: SIM115 (closed by close(), after the last member)
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
            errors="surrogateescape", bufsize=_BLOCK)
        self.tar.copybufsize = _BLOCK  # type: ignore[attr-defined]  # 1 MiB writes, not 16 KiB

    def entry(self, name: str, node: Node, content: Iterator[bytes] | None,
              link_to: str | None) -> str | None:
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid = node.mode, node.uid, node.gid
        info.uname, info.gname = node.user or "", node.group or ""
        info.mtime = node.mtime_ns // 10**9
        pax: dict[str, str] = {}
        if node.mtime_ns % 10**9 or node.mtime_ns < 0:
            pax["mtime"] = _pax_time(node.mtime_ns)
        for k, v in (node.xattrs or {}).items():
            try:
                pax["SCHILY.xattr." + k.decode("utf-8")] = v.decode("utf-8", "surrogateescape")
            except UnicodeDecodeError:
                return f"its xattr {show(k)} has a name that is not UTF-8"
        info.pax_headers = pax
        if link_to is not None:
            info.type, info.linkname = tarfile.LNKTYPE, link_to
        elif node.type == FILE:
            info.size = node.size
        elif node.type == DIR:
            info.type = tarfile.DIRTYPE
        elif node.type == SYMLINK:
            info.type, info.linkname = tarfile.SYMTYPE, os.fsdecode(node.target or b"")
        elif node.type in (CHARDEV, BLOCKDEV):
            info.type = tarfile.CHRTYPE if node.type == CHARDEV else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(node.rdev or 0), os.minor(node.rdev or 0)
        elif node.type == FIFO:
            info.type = tarfile.FIFOTYPE
        else:
            return f"tar cannot hold a {node.type}"
        # buffered: tarfile wants every read but the last one full
        body = io.BufferedReader(_Chunks(content), _BLOCK) if content is not None else None
        self.tar.addfile(info, body if info.size else None)
        return None

    def close(self) -> None:
        self.tar.close()

    def abandon(self) -> None:
        """After an error: write nothing more (no end-of-archive blocks, not even later)."""
        self.tar.fileobj.closed = True  # type: ignore[union-attr,attr-defined]
        self.tar.closed = True  # type: ignore[attr-defined]


class _Zip:
    links = False

    def __init__(self, out: BinaryIO) -> None:
        self.zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED)

    def entry(self, name: str, node: Node, content: Iterator[bytes] | None,
              link_to: str | None) -> str | None:
        if node.type not in (FILE, DIR, SYMLINK):
            return f"zip cannot hold a {node.type} (--archive tar can)"
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return "zip cannot hold a name that is not UTF-8 (--archive tar can)"
        secs = node.mtime_ns // 10**9
        y, mo, d, h, mi, s = time.localtime(min(max(secs, 315532800), 4354819199))[:6]
        zi = zipfile.ZipInfo(name + ("/" if node.type == DIR else ""),
                             (min(max(y, 1980), 2107), mo, d, h, mi, s))
        zi.create_system = 3  # unix: external_attr holds st_mode
        zi.external_attr = st_mode(node) << 16 | (
            0x10 if node.type == DIR else 0)
        # the extended timestamp field: the mtime in UTC seconds (unzip restores it)
        zi.extra = b"UT\x05\x00\x01" + max(min(secs, 2**31 - 1), -2**31).to_bytes(
            4, "little", signed=True)
        if node.type == DIR:
            self.zip.writestr(zi, b"")
        elif node.type == SYMLINK:
            self.zip.writestr(zi, node.target or b"")
        else:
            with self.zip.open(zi, "w", force_zip64=node.size >= 1 << 31) as w:
                for data in content or iter(()):
                    w.write(data)
        return None

    def close(self) -> None:
        self.zip.close()

    def abandon(self) -> None:
        """After an error: write nothing more (no central directory, not even later)."""
        self.zip.fp = None


def _content(st: Store, node: Node, path: bytes) -> Iterator[bytes]:
    """A file's blobs, in order, after checking their length against the node's size."""
    ids = node.content or []
    stored = sum(st.locate(b).entry.raw_length for b in ids)
    if stored != node.size:
        raise IntegrityError(f"{show(path, 200)}: its blobs hold {stored} bytes, the tree "
                             f"says {node.size}")
    return st.iter_blobs(ids)


def dump(st: Store, snap: Snapshot, sub: str | None, path: str, out: BinaryIO, *,
         archive: str = "tar", warn: Callable[[str], None] | None = None,
         strip: int = 0) -> DumpResult:
    """Write PATH (inside SUB of a ``SNAP:SUB`` reference) of SNAP to OUT: a file's bytes,
    or a directory as an ARCHIVE whose member names lose STRIP leading components
    (``--strip-components``; shallower entries are left out). Symlinks and special files
    alone are refused."""
    if archive not in ARCHIVES:
        raise UsageError(f"unknown archive format {archive!r} (tar or zip)")
    check_strip(strip)
    with shared_lock(st, "dump", read_only=True):
        return _dump(st, snap, sub, path, out, archive, warn, strip)


def _dump(st: Store, snap: Snapshot, sub: str | None, path: str, out: BinaryIO,
          archive: str, warn: Callable[[str], None] | None, strip: int) -> DumpResult:
    load = uncached(st)
    loc = locate(load, snap, join_paths(sub, path))
    node = loc.node
    if loc.tree is None:
        assert node is not None
        if strip:
            raise UsageError(f"--strip-components does not apply to the one file "
                             f"{show(loc.path, 200)}")
        if node.type != FILE:
            raise UsageError(f"{show(loc.path, 200)} is a {node.type} in snapshot "
                             f"{snap.id[:8]}: only files and directories can be dumped")
        res = DumpResult(loc.path, None, 1)
        for data in _content(st, node, loc.path):
            out.write(data)
            res.bytes += len(data)
        return res
    res = DumpResult(loc.path, archive)
    prefix = os.fsencode(join_paths(None, path).lstrip("/"))
    full = loc.path.rstrip(b"/")
    links: dict[tuple[int, int], str] = {}
    tree = loc.tree

    def entries() -> Iterator[tuple[bytes, Node]]:
        if node is not None and prefix:
            yield b"/" + prefix, node  # the directory itself (not the snapshot's root)
        for e in walk(load, tree, path=b"/" + prefix if prefix else b""):
            yield e.path, e.node

    if strip:  # before any writer exists: two members of one name, one hiding the other
        check_unique((rel[1:] for rel, _ in entries()), strip)
    writer: _Writer = _Tar(out) if archive == "tar" else _Zip(out)

    def add(rel: bytes, n: Node) -> None:
        kept = strip_components(rel[1:], strip)
        if kept is None:
            return  # shallower than --strip-components: left out (borg's export-tar)
        name = os.fsdecode(kept)
        where = full + (rel[1 + len(prefix):] if prefix else rel)
        linked = n.type == FILE and n.nlink > 1 and writer.links
        link_to = links.get((n.device, n.inode)) if linked else None
        content = _content(st, n, where) if n.type == FILE and link_to is None else None
        why = writer.entry(name, n, content, link_to)
        if why is not None:
            res.skipped.append(os.fsdecode(where))
            if warn is not None:
                warn(f"{show(where, 200)} left out of the {archive} archive: {why}")
            return
        if linked and link_to is None:  # the first of its links that made it in
            links[(n.device, n.inode)] = name
        res.entries += 1
        res.bytes += n.size if content is not None else 0

    try:
        for rel, n in entries():
            add(rel, n)
    except BaseException:
        writer.abandon()
        raise
    writer.close()
    return res
