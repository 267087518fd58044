"""The read-only filesystem a mount shows, independent of the FUSE binding.

``MountFS`` answers path requests (``getattr``, ``readdir``, ``readlink``, ``open``,
``read``, ``release``, ``getxattr``, ``listxattr``) with plain values, or raises
``OSError`` with an errno: ``fuse.py`` only translates. Paths are bytes, ``/``-separated,
relative to the mount's root.

- Above the snapshots is the layout of ``layout.py`` (snapshots/, ids/, hosts/, tags/,
  ``latest`` links). It is rebuilt from the store's snapshot list when a path above the
  snapshots is looked up or listed, at most every ``refresh`` seconds: a new snapshot
  appears, a forgotten one goes. Only new snapshot objects are read; when there are some,
  the index objects written since are added (entries are only ever added: a blob this
  mount can see stays readable while its lock lives, see ``serve.py``).
- Below a snapshot every entry is its node as stored: type and permission bits, uid/gid,
  size (a symlink: its target's length), mtime and ctime to the nanosecond (atime shows
  the mtime), rdev, link count, xattrs and symlink targets byte for byte. Directories show
  one link (unknown, as on btrfs: ``find`` then never skips by link count).
- Inode numbers are stable for the life of the mount and need no table: a hash of the
  snapshot id and the path, or for a file with several links of the snapshot id and its
  stored device and inode, so the hard links of one snapshot share an inode (``cp -a``
  and ``tar`` keep them linked) and no two snapshots ever do.
- Contents are read on demand by ``content.py``: through a handle of ``open``, or by path
  (``read_path``, when the kernel opens files itself), the placement of the last
  ``OPEN_FILES`` files so read kept.
- Resolved paths inside snapshots, and the placements of ``read_path``, are kept
  (``PATH_CACHE`` of them; a snapshot never changes) until the layout changes;
  ``on_links_changed`` is told which ``latest`` links moved.

Invariants: nothing is ever written to the store or anywhere else. A malformed tree
(``model/tree.py`` refuses it), a missing blob or a failed backend read is ``EIO`` for
the requests that need it, reported once per object through ``warn``; the mount goes on
serving everything else.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CasError, IntegrityError, NotFound
from ..lru import LRU
from ..model.fields import show
from ..model.snapshot import Snapshot
from ..model.tree import DIR, FILE, SYMLINK, Node, Tree
from ..ops.snapsel import SnapshotFilter, st_mode
from ..store import Store, snapshot_key
from . import layout
from .content import BlobCache, Content, Handle

Attrs = dict[str, int]
PATH_CACHE = 1 << 16  # resolved paths kept (a lookup, open and xattr read resolve each)
OPEN_FILES = 1024  # files read through read_path whose blob placement is kept
_LINK_MODE = stat.S_IFLNK | 0o777


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _ino(*parts: bytes) -> int:
    h = hashlib.blake2b(b"\0".join(parts), digest_size=8).digest()
    return max(2, int.from_bytes(h, "little") >> 1)  # 1 is the root; 63 bits


@dataclass(frozen=True, slots=True)
class _Meta:
    dir: layout.Dir
    path: bytes


@dataclass(frozen=True, slots=True)
class _Link:
    target: bytes
    mtime_ns: int
    path: bytes


@dataclass(frozen=True, slots=True)
class _InSnap:
    snap: Snapshot
    rel: bytes  # b"" for the snapshot's root, else b"home/me/x"
    node: Node | None  # None for the snapshot's root
    where: bytes  # the mount path, for messages

    @property
    def tree(self) -> bytes | None:
        if self.node is None:
            return self.snap.tree
        return self.node.subtree if self.node.type == DIR else None


_Entry = _Meta | _Link | _InSnap


class MountFS:
    """The filesystem of one mount of STORE (see the module docstring)."""

    def __init__(self, store: Store, select: SnapshotFilter | None = None, *,
                 refresh: float = 30.0, warn: Callable[[str], None] | None = None,
                 cache_bytes: int | None = None, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.store = store
        self.select = select or SnapshotFilter()
        self.refresh_every = refresh
        self._warn = warn or (lambda _m: None)
        self._warned: set[str] = set()
        self._clock = clock
        self._known: dict[str, Snapshot] = {}  # every readable snapshot, by id
        self._unreadable: set[str] = set()
        self._checked = -1e18
        self._built = False
        self._refresh_mu = threading.Lock()
        self.layout = layout.build([])
        # told the mount paths of the links whose target changed (the binding drops the
        # kernel's cached copy of each: it caches link targets)
        self.on_links_changed: Callable[[list[bytes]], None] = lambda _paths: None
        self.uid, self.gid = os.getuid(), os.getgid()
        cache = BlobCache(self._get_blob, *(() if cache_bytes is None else (cache_bytes,)))
        self.content = Content(cache, self._blob_length)
        self._handles: dict[int, Handle] = {}
        self._fh = itertools.count(1)
        self._by_path: LRU[bytes, Handle] = LRU(OPEN_FILES)  # for read_path
        # mount path -> its entry in a snapshot (immutable); emptied when the layout
        # changes, as a name above the snapshots may then name another snapshot
        self._paths: dict[bytes, _InSnap] = {}

    # ----- the snapshot list ----------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Re-read the snapshot list if it is older than ``refresh`` seconds (or FORCE);
        whether the layout changed."""
        with self._refresh_mu:
            now = self._clock()
            if not force and now - self._checked < self.refresh_every:
                return False
            self._checked = now
            try:
                names = set(self.store.snapshot_ids())
            except CasError as e:
                self._warn_once("list", f"cannot list snapshots ({e}); showing the last list")
                return False
            new = [n for n in names if n not in self._known and n not in self._unreadable]
            for n in new:
                try:
                    self._known[n] = self.store.load_snapshot(n)
                except NotFound:
                    continue
                except CasError as e:  # a damaged snapshot: left out (design §7), said once
                    self._unreadable.add(n)
                    self._warn_once(n, f"{snapshot_key(n)} is damaged and not shown ({e})")
            gone = self._known.keys() - names
            for n in gone:
                del self._known[n]
            if new:
                self._add_index_objects()
            if not new and not gone and self._built:
                return False
            self._built = True
            old = layout.links(self.layout)
            self.layout = layout.build(s for s in self._known.values() if self.select.match(s))
            self._paths = {}
            self._by_path.clear()
            after = layout.links(self.layout)
            changed = [p for p, t in old.items() if after.get(p) != t]
            if changed:
                self.on_links_changed(changed)
            return True

    def snapshots(self) -> list[Snapshot]:
        """The snapshots shown, oldest first."""
        return sorted(self.layout.dirs[b"snapshots"].snaps.values(), key=lambda s: (s.time, s.id))

    def _add_index_objects(self) -> None:
        try:
            self.store.add_new_index_objects()
        except CasError as e:
            self._warn_once("index", f"cannot read new index objects ({e})")

    # ----- resolving paths ------------------------------------------------------------

    def _resolve(self, path: bytes) -> _Entry:
        hit = self._paths.get(path)
        if hit is not None:
            return hit
        comps = [c for c in path.split(b"/") if c]
        entry = self._resolve_in(self.layout, comps, path)
        if isinstance(entry, _InSnap):
            if len(self._paths) >= PATH_CACHE:
                self._paths = {}
            self._paths[path] = entry
            return entry
        # a listing or lookup above the snapshots: refresh
        if (entry is None or isinstance(entry, _Meta)) and self.refresh():
            entry = self._resolve_in(self.layout, comps, path)
        if entry is None:
            raise _err(errno.ENOENT)
        return entry

    def _resolve_in(self, root: layout.Dir, comps: list[bytes], path: bytes) -> _Entry | None:
        d = root
        for i, c in enumerate(comps):
            if c in d.dirs:
                d = d.dirs[c]
            elif c in d.snaps:
                return self._in_snapshot(d.snaps[c], comps[i + 1:], path)
            elif c in d.links and i == len(comps) - 1:
                return _Link(d.links[c], d.mtime_ns, path)
            elif c in d.links:
                raise _err(errno.ENOTDIR)  # the kernel follows links itself
            else:
                return None
        return _Meta(d, path)

    def _in_snapshot(self, snap: Snapshot, rest: list[bytes], path: bytes) -> _InSnap:
        tree: bytes | None = snap.tree
        node: Node | None = None
        for name in rest:
            if tree is None:
                raise _err(errno.ENOTDIR)
            node = self._tree(tree, path).find(name)
            if node is None:
                raise _err(errno.ENOENT)
            tree = node.subtree if node.type == DIR else None
        return _InSnap(snap, b"/".join(rest), node, path)

    def _tree(self, tree_id: bytes, path: bytes) -> Tree:
        try:
            return self.store.load_tree(tree_id)
        except IntegrityError as e:
            if "not in the index" in str(e):
                self._add_index_objects()  # written by a backup since our last look
                try:
                    return self.store.load_tree(tree_id)
                except IntegrityError as e2:
                    e = e2
            self._warn_once(tree_id.hex(), f"{show(path, 200)}: tree {tree_id.hex()[:16]}: {e}")
            raise _err(errno.EIO) from None
        except CasError as e:  # a backend failure (after its retries)
            self._warn_once(tree_id.hex(), f"{show(path, 200)}: tree {tree_id.hex()[:16]}: {e}")
            raise _err(errno.EIO) from None

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(msg)

    # ----- attributes -----------------------------------------------------------------

    def _meta_attrs(self, ino: int, mode: int, mtime_ns: int, size: int = 0) -> Attrs:
        return {"st_ino": ino, "st_mode": mode, "st_nlink": 1, "st_uid": self.uid,
                "st_gid": self.gid, "st_size": size, "st_mtime": mtime_ns,
                "st_ctime": mtime_ns, "st_atime": mtime_ns}

    def _attrs(self, e: _Entry) -> Attrs:
        if isinstance(e, _Meta):
            ino = 1 if e.path.strip(b"/") == b"" else _ino(b"meta", e.path.strip(b"/"))
            return self._meta_attrs(ino, stat.S_IFDIR | 0o555, e.dir.mtime_ns)
        if isinstance(e, _Link):
            return self._meta_attrs(_ino(b"meta", e.path.strip(b"/")), _LINK_MODE,
                                    e.mtime_ns, len(e.target))
        sid = e.snap.id.encode()
        n = e.node
        if n is None:
            return self._meta_attrs(_ino(sid), stat.S_IFDIR | 0o755, int(e.snap.time * 1e9))
        return node_attrs(n, sid, e.rel)

    def getattr(self, path: bytes) -> Attrs:
        return self._attrs(self._resolve(path))

    def readdir(self, path: bytes, skip: int = 0) -> list[tuple[bytes, Attrs]]:
        """The entries of directory PATH (without ``.`` and ``..``) after the first SKIP,
        each with its complete attributes (the kernel's READDIRPLUS caches them: no LOOKUP
        follows)."""
        e = self._resolve(path)
        if isinstance(e, _Meta):
            out: list[tuple[bytes, Attrs]] = []
            base = path.rstrip(b"/")
            for name in e.dir.names()[skip:]:
                child = self._resolve_in(e.dir, [name], base + b"/" + name)
                assert child is not None
                out.append((name, self._attrs(child)))  # reads no tree
            return out
        if isinstance(e, _Link):
            raise _err(errno.ENOTDIR)
        tree = e.tree
        if tree is None:
            raise _err(errno.ENOTDIR)
        sid = e.snap.id.encode()
        prefix = e.rel + b"/" if e.rel else b""
        return [(n.name, node_attrs(n, sid, prefix + n.name))
                for n in self._tree(tree, path).nodes[skip:]]

    def readlink(self, path: bytes) -> bytes:
        e = self._resolve(path)
        if isinstance(e, _Link):
            return e.target
        if isinstance(e, _InSnap) and e.node is not None and e.node.type == SYMLINK:
            return e.node.target or b""
        raise _err(errno.EINVAL)

    def getxattr(self, path: bytes, name: bytes) -> bytes:
        value = self._xattrs(path).get(name)
        if value is None:
            raise _err(errno.ENODATA)
        return value

    def listxattr(self, path: bytes) -> list[bytes]:
        return sorted(self._xattrs(path))

    def _xattrs(self, path: bytes) -> dict[bytes, bytes]:
        e = self._resolve(path)
        if isinstance(e, _InSnap) and e.node is not None:
            return e.node.xattrs or {}
        return {}

    # ----- contents -------------------------------------------------------------------

    def open(self, path: bytes, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise _err(errno.EROFS)
        fh = next(self._fh)
        self._handles[fh] = self._handle(path)
        return fh

    def _handle(self, path: bytes) -> Handle:
        e = self._resolve(path)
        if not isinstance(e, _InSnap) or e.node is None or e.node.type == DIR:
            raise _err(errno.EISDIR if not isinstance(e, _Link) else errno.EINVAL)
        n = e.node
        if n.type != FILE:
            raise _err(errno.ENXIO)  # a device, FIFO or socket of a snapshot opens nothing
        try:
            h = self.content.open(n.content or [], n.size, show(path, 200))
        except IntegrityError as err:
            if "not in the index" not in str(err):
                self._warn_once(path.hex(), str(err))
                raise _err(errno.EIO) from None
            self._add_index_objects()
            try:
                h = self.content.open(n.content or [], n.size, show(path, 200))
            except CasError as err2:
                self._warn_once(path.hex(), f"{show(path, 200)}: {err2}")
                raise _err(errno.EIO) from None
        return h

    def read(self, fh: int, size: int, offset: int) -> bytes:
        h = self._handles.get(fh)
        if h is None:
            raise _err(errno.EBADF)
        return self._read(h, size, offset)

    def read_path(self, path: bytes, size: int, offset: int) -> bytes:
        """``read`` of a file that was never opened here (the kernel opens files itself
        when the binding declined OPEN: no OPEN or RELEASE per file)."""
        h = self._by_path.get(path)
        if h is None:
            h = self._handle(path)
            self._by_path.put(path, h)
        return self._read(h, size, offset)

    def _read(self, h: Handle, size: int, offset: int) -> bytes:
        try:
            return self.content.read(h, offset, size)
        except CasError as e:  # said once per file
            self._warn_once(f"read:{h.what}", f"{h.what}: cannot read: {e}")
            raise _err(errno.EIO) from None

    def release(self, fh: int) -> None:
        self._handles.pop(fh, None)

    def close(self) -> None:
        self._handles.clear()
        self._by_path.clear()
        self.content.close()

    # ----- store access (counted by tests through the cache) ---------------------------

    def _get_blob(self, blob_id: bytes) -> bytes:
        return self.store.get_blob(blob_id)

    def _blob_length(self, blob_id: bytes) -> int:
        return self.store.locate(blob_id).entry.raw_length

    def statfs(self) -> dict[str, Any]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}


def _node_ino(n: Node, sid: bytes, rel: bytes) -> int:
    if n.type != DIR and n.nlink > 1:
        return _ino(sid, b"hardlink", b"%d:%d" % (n.device, n.inode))
    return _ino(sid, rel)


def node_attrs(n: Node, sid: bytes, rel: bytes) -> Attrs:
    """The ``stat`` of node N at REL in snapshot SID."""
    if n.type == FILE:
        size = n.size
    elif n.type == SYMLINK:
        size = len(n.target or b"")
    else:
        size = 0
    return {"st_ino": _node_ino(n, sid, rel), "st_mode": st_mode(n),
            "st_nlink": 1 if n.type == DIR else n.nlink, "st_uid": n.uid, "st_gid": n.gid,
            "st_size": size, "st_blocks": (size + 511) // 512, "st_rdev": n.rdev or 0,
            "st_mtime": n.mtime_ns, "st_ctime": n.ctime_ns, "st_atime": n.mtime_ns,
            "st_blksize": 1 << 20}  # cp and cat read 1 MiB at a time
