"""The archiver: walk a source tree, save new file content and trees, return a root tree.

Pipeline (DESIGN §11, backup): the walker thread scans directories with ``*at`` calls; a file
whose (size, mtime_ns, ctime_ns, inode) match its node in the parent snapshot is not
read — its content list is reused; any other regular file is opened by the walker and
handed to a thread pool (the file saver) that reads, cuts, hashes, seals and packs it with
the GIL released. Directories are finalised in post-order from a FIFO as soon as all of
their files are saved, so memory stays bounded by the work in flight (``max_inflight``
files), not by the size of the tree. What it holds meanwhile: walk_items.py.

Invariants:
- A directory's tree blob is saved only after every blob it references was handed to
  the store; the store's flush (before the snapshot) makes them durable in order.
- Unreadable entries are warned about and counted (``Summary.unreadable``): never
  silently skipped. They are left out of the tree.
- Racy entries: an entry equal to its parent node by lstat is read again when that
  node's mtime or ctime is within ``RACY_NS`` of the parent snapshot's start or later
  (``ArchiveOptions.parent_start_ns``): a change just after the parent read it may have
  kept its times. It counts as unchanged when its content is the parent's.
- Files are read by the file saver (file_saver.py), which detects changes during reads.
- Hard links to one inode are read once per backup.
- The walk is iterative (a stack of open directory fds, ``Archiver._walk``): no depth of
  tree stops a backup, and a tree one level deeper costs one fd, not a stack frame.
- An unchanged file reuses its parent's content list only when every blob of it is in
  the index: after ``repair`` dropped damaged blobs, the next backup re-reads the file
  and uploads them again. The index is asked once per parent tree, as it is loaded, for
  every content and subtree id it names (parent_index.py): no lookup per entry.
- With ``ArchiveOptions.dirty`` (``watch``: absolute paths of directories whose entries
  changed since the parent snapshot), a directory that is neither dirty nor above a dirty
  one and whose (mtime_ns, ctime_ns, inode, device) match its parent node keeps the
  parent's subtree without being read (listed in ``reused``). ``dirty=None`` scans all.
- The parent's trees of the subdirectories of a directory being entered are fetched
  ahead on threads (tree_ahead.py): the same bytes and checks as reading them in turn.
- A directory's entries are lstat-ed when it is entered, before any is visited. With a
  directory cache (dircache.py) whose record matches the listing's digest, its files are
  counted as unchanged without the parent tree: its tree id is the recorded one when its
  subdirectories' tree ids are the recorded ones, else the recorded tree's file maps are
  reused beside the new subdirectory nodes -- the same bits the comparison with the
  parent tree gives (tests/integration/test_dircache.py). Its subdirectories get no
  node built (no listxattr; ``listing.walk_node``): their lstat is the recorded one, so their
  maps are the recorded tree's with their new tree ids, as its files' maps are (a user
  or group renamed in the password database since shows in neither, as for files).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from ..ids import DATA, TREE
from ..model.snapshot import Summary
from ..model.tree import DIR, FILE, SYMLINK, Node, Tree, encode_maps
from ..source.exclude import Excluder
from ..source.fs import open_dir_at, raise_fd_limit, short_path
from ..source.meta import node_from_stat, node_type
from ..source.prefetch import Prefetcher
from ..store import Store
from .dircache import RACY_NS, DirCache, DirRecord, digest_and_racy
from .file_saver import FileResult, FileSaver
from .listing import kept_dir_map, walk_node
from .listing import lstat_all as _lstat_all  # (the tests patch this name)
from .observer import Observer
from .parent_index import NONE_MISSING, all_indexed, missing_ids
from .save_pool import default_procs
from .tree_ahead import TreeAhead
from .walk_items import Child, Descend, Frame, Pending, PendingDir

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK

_REFRESH_EVERY = 5.0  # seconds between looks at other writers' new index objects
_BATCH_FILES = 64
_BATCH_BYTES = 4 << 20
_PROGRESS_EVERY = 256  # entries per observer.progress call
_PROGRESS_SECONDS = 0.2  # ... or sooner, so a few large files still count up on the bar


@dataclass
class ArchiveOptions:
    excluder: Excluder = field(default_factory=Excluder)
    one_file_system: bool = False
    dry_run: bool = False
    workers: int = max(2, os.cpu_count() or 2)  # each holds a max_size + 2 MiB read buffer
    max_inflight: int = 16  # batches of up to _BATCH_FILES open files each
    # worker processes for small files (save_pool.py; 0: threads only); the default is
    # CASBACKUP_SAVE_PROCS or one by the core count
    save_procs: int = field(default_factory=default_procs)
    dirty: set[bytes] | None = None  # watch: only these directories (and above) are read
    prefetch: bool = True  # warm the inode cache ahead of the walk (False: the caller does)
    skip_dirs: frozenset[tuple[int, int]] = frozenset()  # (st_dev, st_ino): the store itself
    # the parent snapshot's start (ns, by the clock of the backup that made it): an entry
    # whose recorded mtime or ctime is within RACY_NS of it or later is read again, its
    # lstat's match proving nothing (the racy-git rule); None: no parent
    parent_start_ns: int | None = None


class Archiver:
    def __init__(self, store: Store, observer: Observer, options: ArchiveOptions,
                 dircache: DirCache | None = None) -> None:
        self.store = store
        self.dircache = dircache if options.dirty is None else None
        if self.dircache is not None:  # its records naming a blob not indexed: gone
            self.dircache.keep_indexed(store.index.contains_many)
        self.obs = observer
        self.opt = options
        self.summary = Summary()
        self._lock = threading.Lock()
        self.saver = FileSaver(store, observer, self.summary, self._lock,
                               dry_run=options.dry_run, workers=options.workers,
                               max_inflight=options.max_inflight, procs=options.save_procs)
        self._queue: deque[PendingDir] = deque()
        self._hardlinks: dict[tuple[int, int], Pending] = {}
        self._batch: list[tuple[int, Pending, bytes]] = []
        self._batch_bytes = 0
        self._last_refresh = time.monotonic()
        self._small = store.config.chunker.min_size
        ps = options.parent_start_ns
        self._racy_from = None if ps is None else ps - RACY_NS  # (ns; see _racy)
        self._ahead = TreeAhead(store)
        self._ticks = self._tick_bytes = 0  # progress not yet told (see _tick)
        self._ticked = time.monotonic()
        # per-file observer calls only when the observer does something with them (-q,
        # a bare bar: none -- ~10 us a file in the CLI observer)
        self._tell_unchanged = observer.listens("unchanged")
        self._tell_read = observer.listens("new") or observer.listens("changed")
        self.reused: list[Node] = []  # directory nodes kept from the parent (dirty mode)
        self._above_dirty: set[bytes] = set()
        for d in options.dirty or ():
            while d not in (b"/", b"") and (d := os.path.dirname(d)) not in self._above_dirty:
                self._above_dirty.add(d)

    def _tick(self, nbytes: int) -> None:
        """One more entry done (NBYTES of it not read): told to the observer in bunches
        of ``_PROGRESS_EVERY`` (its lock and bar update cost more than the entry), or after
        ``_PROGRESS_SECONDS``, whichever comes first."""
        self._ticks += 1
        self._tick_bytes += nbytes
        if (self._ticks >= _PROGRESS_EVERY
                or time.monotonic() - self._ticked >= _PROGRESS_SECONDS):
            self._flush_ticks()

    def _flush_ticks(self) -> None:
        if self._ticks:
            self.obs.progress(self._tick_bytes, self._ticks)
            self._ticks = self._tick_bytes = 0
        self._ticked = time.monotonic()

    def _add(self, kind: str, data: bytes | memoryview) -> bytes:
        return self.saver.add(kind, data)

    def _submit_batch(self) -> None:
        batch, self._batch = self._batch, []
        self._batch_bytes = 0
        if not batch:
            return
        fut = self.saver.submit([(fd, p.node, path) for fd, p, path in batch])
        for _, p, _ in batch:
            p.fut = fut

    # ----- walking (the caller's thread) -------------------------------------------------

    def _warn_unreadable(self, path: bytes, e: OSError) -> None:
        with self._lock:
            self.summary.unreadable += 1
        self.obs.warn(os.fsdecode(path), e.strerror or str(e))

    def _file(self, dir_fd: int, path: bytes, node: Node, parent: dict[str, Any] | None,
              racy: bool = False) -> Node | Pending:
        """Hand a file to the saver. RACY: it equals PARENT by lstat but the parent's
        times are racy -- counted and told once read (``_resolve``), as unchanged if its
        content is the parent's."""
        s = self.summary
        s.total_size += node.size
        if not racy:
            if parent is None:
                s.files_new += 1
            else:
                s.files_changed += 1
            if self._tell_read:
                self.obs.file(path, "new" if parent is None else "changed")
        same = list(parent["content"]) if racy and parent is not None else None
        link_key = (node.device, node.inode)
        if node.nlink > 1 and link_key in self._hardlinks:
            first = self._hardlinks[link_key]
            return Pending(node, first.fut, first.idx, first, same, path)
        try:
            fd = os.open(node.name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            self._warn_unreadable(path, e)
            return node  # caller drops nodes whose content is None
        if node.size >= self._small:
            self._submit_batch()  # keep order: earlier small files go first
        pend = Pending(node, None, len(self._batch), None, same, path)
        self._batch.append((fd, pend, path))
        self._batch_bytes += node.size
        if node.size >= self._small or len(self._batch) >= _BATCH_FILES or (
                self._batch_bytes >= _BATCH_BYTES):
            self._submit_batch()
        if node.nlink > 1:
            self._hardlinks[link_key] = pend
        return pend

    def _enter(self, dir_fd: int, path: bytes, node: Node, parent_subtree: bytes | None,
               root_dev: int, rel: bytes, parent_indexed: bool = False) -> Frame:
        """Start a directory: its PendingDir, its parent's maps, the names to visit.
        PARENT_INDEXED: PARENT_SUBTREE is known to be indexed (its parent tree's
        ``missing_ids`` said so), else it is looked up."""
        pd = PendingDir(node, parent_subtree=parent_subtree)
        self.summary.dirs += 1
        now = time.monotonic()
        if now - self._last_refresh > _REFRESH_EVERY:
            self._last_refresh = now
            self.store.add_new_index_objects()  # dedup against concurrent writers
        skip = (self.opt.one_file_system and node.device != root_dev) or (
            self.opt.excluder.skips_contents(short_path(path, dir_fd, b"."))
        )
        entries: list[tuple[bytes, os.stat_result | OSError]] = []
        listed = all_stat = True
        if not skip:
            try:
                entries = _lstat_all(dir_fd)
                all_stat = not any(isinstance(st, OSError) for _, st in entries)
            except OSError as e:
                self._warn_unreadable(path, e)
                listed = False
        dc = self.dircache
        if dc is not None and listed and all_stat:
            stats = cast(list[tuple[bytes, os.stat_result]], entries)
            pd.digest, racy = digest_and_racy(node.device, node.inode, stats,
                                              dc.racy_from)
            pd.recordable = not racy
            rec = dc.old.get(pd.digest)  # (every id of it indexed: keep_indexed)
            if rec is not None:
                pd.rec = rec
                return Frame(pd, dir_fd, path, rel,
                             iter(self._keep_files(pd, path, rel, stats)), None,
                             NONE_MISSING, dict(rec.subdirs))
        parent_tree: dict[bytes, dict[str, Any]] | None = None
        missing = NONE_MISSING
        if parent_subtree is not None and (parent_indexed
                                           or parent_subtree in self.store.index):
            # (not indexed: condemned by a gc beside us -- read this directory afresh)
            # with every id it names that the index lacks, asked at once for it and the
            # trees fetched ahead by now (parent_index.py)
            pd.parent_maps, missing = self._ahead.checked_maps(parent_subtree,
                                                               self.store.index)
            parent_tree = {m["name"]: m for m in pd.parent_maps}
            if self.opt.dirty is None:  # (watch enters only dirty directories)
                self._ahead.want([m["subtree"] for m in pd.parent_maps
                                  if m["type"] == DIR and m["subtree"] not in missing])
        return Frame(pd, dir_fd, path, rel, iter(entries), parent_tree, missing, None)

    def _keep_files(self, pd: PendingDir, dir_path: bytes, rel: bytes,
                    entries: list[tuple[bytes, os.stat_result]],
                    ) -> list[tuple[bytes, os.stat_result]]:
        """The cache's fast path for a directory's entries other than subdirectories, in
        one loop (no per-entry call of ``_entry``): each not excluded is unchanged, its
        map in the recorded tree, its name in ``pd.kept``. Returns the subdirectories,
        walked as usual."""
        dirs: list[tuple[bytes, os.stat_result]] = []
        kept = pd.kept
        excluded = self.opt.excluder.excluded
        tell = self._tell_unchanged
        prefix = dir_path + b"/" if dir_path != b"/" else b"/"
        rprefix = rel + b"/" if rel else b""
        files = nbytes = 0
        for name, st in entries:
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                dirs.append((name, st))
                continue
            if excluded(rprefix + name, False, prefix + name, st.st_size):
                continue
            kept.append(name)
            if stat.S_ISREG(mode):
                files += 1
                nbytes += st.st_size
                if tell:
                    self.obs.file(prefix + name, "unchanged")
        s = self.summary
        s.total_size += nbytes
        s.files_unchanged += files
        if kept:  # one look at _tick's bunching for them all
            self._ticks += len(kept) - 1
            self._tick_bytes += nbytes
            self._tick(0)
        return dirs

    def _walk(self, fd: int, path: bytes, node: Node, parent_subtree: bytes | None,
              root_dev: int) -> PendingDir:
        """Archive the directory open at ``fd`` (the caller closes it) and everything below
        it, depth first in name order. Iterative: a stack of open directories (one fd per
        level, so ``*at`` calls keep working below PATH_MAX), never recursion, so no depth
        of tree stops a backup. A directory is queued for its tree when its last entry was
        visited, children before parents (post-order)."""
        root = self._enter(fd, path, node, parent_subtree, root_dev, b"")
        stack = [root]
        try:
            while stack:
                f = stack[-1]
                ent = next(f.entries, None)
                if ent is None:
                    stack.pop()
                    if f is not root:
                        os.close(f.fd)
                    self._queue.append(f.pd)
                    self._drain(block=False)
                    continue
                unreadable = self.summary.unreadable
                child = self._entry(f.fd, f.path, ent[0], ent[1], f.parent_tree,
                                    f.missing, root_dev, f.rel, f.subdirs)
                if self.summary.unreadable != unreadable:
                    f.pd.recordable = False
                if isinstance(child, Descend):
                    try:
                        sub = self._enter(child.fd, child.path, child.node, child.parent_subtree,
                                          root_dev, child.rel, child.parent_indexed)
                        sub.pd.lstat, sub.pd.path = child.lstat, child.path
                    except BaseException:
                        os.close(child.fd)
                        raise
                    f.pd.children.append(sub.pd)
                    stack.append(sub)
                elif child is not None:
                    f.pd.children.append(child)
        finally:
            for f in stack:
                if f is not root:
                    os.close(f.fd)
        return root.pd

    def _unchanged(self, pm: dict[str, Any] | None, st: os.stat_result,
                   missing: frozenset[bytes]) -> bool:
        """The fast path: is this entry exactly its node in the parent snapshot (whose
        tree's ``missing_ids`` are MISSING)?"""
        if (pm is None or pm.get("mtime_ns") != st.st_mtime_ns
                or pm.get("ctime_ns") != st.st_ctime_ns or pm.get("inode") != st.st_ino
                or pm.get("device") != st.st_dev):
            return False
        t = pm.get("type")
        if t == FILE:
            content = pm.get("content")
            return (stat.S_ISREG(st.st_mode) and pm.get("size") == st.st_size
                    and content is not None
                    and all_indexed(self.store.index, content, missing))
        return t != DIR and node_type(st.st_mode) == t and pm.get("size", 0) == (
            st.st_size if t == SYMLINK else 0)

    def _entry(self, dir_fd: int, dir_path: bytes, name: bytes, st: os.stat_result | OSError,
               parent_tree: dict[bytes, dict[str, Any]] | None, missing: frozenset[bytes],
               root_dev: int, rel: bytes, subdirs: dict[bytes, bytes] | None = None,
               ) -> Node | Pending | dict[str, Any] | Descend | None:
        """One entry of a directory (its lstat ST, or the error of it): a finished node, a
        file being saved, the parent's map, a directory to walk into (``Descend``, its
        fd open), or None (left out). MISSING: the ids PARENT_TREE names that the index
        lacked (``missing_ids``). SUBDIRS (a cached directory's recorded tree ids;
        only its subdirectories come here, ``_keep_files``) names their parent trees."""
        path = dir_path + b"/" + name if dir_path != b"/" else b"/" + name
        crel = rel + b"/" + name if rel else name
        if isinstance(st, OSError):
            self._warn_unreadable(path, st)
            return None
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.opt.excluder.excluded(crel, is_dir, path, st.st_size):
            return None
        if is_dir and (st.st_dev, st.st_ino) in self.opt.skip_dirs:
            self.obs.warn(os.fsdecode(path), "is the store being written to: left out")
            return None
        pnode = parent_tree.get(name) if parent_tree is not None else None
        racy = False
        if self._unchanged(pnode, st, missing) and not (racy := self._racy(pnode)):
            assert pnode is not None
            s = self.summary
            if pnode["type"] == FILE:
                s.total_size += st.st_size
                s.files_unchanged += 1
                if self._tell_unchanged:
                    self.obs.file(path, "unchanged")
            self._tick(st.st_size if pnode["type"] == FILE else 0)
            return pnode
        if is_dir and subdirs is not None:
            # below a directory on the cache's fast path: its map but for the tree id is
            # the recorded tree's (the listing digest covered its lstat), so no node is
            # built (no listxattr) -- ``_finalize_kept`` takes the map from there
            try:
                return Descend(open_dir_at(dir_fd, name), path, walk_node(name, st),
                               subdirs.get(name), crel, st)
            except OSError as e:
                self._warn_unreadable(path, e)
                return None
        try:
            node = node_from_stat(name, short_path(path, dir_fd, name), st)
        except OSError as e:
            self._warn_unreadable(path, e)
            return None
        if is_dir:
            # (SUBDIRS is None here: a cached directory's subdirectories went above)
            psub = (pnode.get("subtree") if pnode is not None and pnode["type"] == DIR
                    else None)
            # (its index answer is in MISSING: not indexed, the directory is read afresh)
            known = psub is not None and all_indexed(self.store.index, (psub,), missing)
            if self._reuse_dir(path, node, pnode, missing):
                return node
            try:
                return Descend(open_dir_at(dir_fd, name), path, node,
                               psub if known else None, crel, parent_indexed=known)
            except OSError as e:
                self._warn_unreadable(path, e)
                return None
        if node.type == FILE:
            return self._file(dir_fd, path, node, pnode, racy)
        self._tick(0)
        return node

    def _racy(self, pm: dict[str, Any] | None) -> bool:
        """Was the parent's node PM recorded within a timestamp tick of the parent's start
        (or after it)? Then a change made just after the parent read it may have kept its
        times: its lstat's match proves nothing and it is read again."""
        return pm is not None and self._racy_from is not None and max(
            pm.get("mtime_ns", 0), pm.get("ctime_ns", 0)) >= self._racy_from

    def _reuse_dir(self, path: bytes, node: Node, parent: dict[str, Any] | None,
                   missing: frozenset[bytes] | None) -> bool:
        """Dirty mode: keep the parent's subtree for a clean, unchanged directory
        (MISSING: its parent tree's ``missing_ids``; None: PARENT is looked up)."""
        dirty = self.opt.dirty
        if (dirty is None or parent is None or parent.get("type") != DIR
                or parent.get("subtree") is None
                or path in dirty or path in self._above_dirty
                or (parent.get("mtime_ns"), parent.get("ctime_ns"), parent.get("inode"),
                    parent.get("device"))
                != (node.mtime_ns, node.ctime_ns, node.inode, node.device)
                or not (parent["subtree"] in self.store.index if missing is None
                        else all_indexed(self.store.index, (parent["subtree"],), missing))):
            return False  # (no racy-entry rule here: the dirty set, events not times, says
            # a directory is clean; its entries' times are a second guard)
        node.subtree = parent["subtree"]
        self.reused.append(node)
        return True

    def _resolve(self, c: Child) -> Node | dict[str, Any] | None:
        """The finished node of a file, waiting for its content; None if unreadable."""
        if isinstance(c, Pending):
            node = c.node
            r = c.result()
            if c.link_of is not None:
                r = FileResult(r.content, 0, False, r.size)  # read once, counted once
            node.content = r.content
            if r.size is not None:  # re-read after a change: the size of what was stored
                node.size = r.size
            # bytes_read and changed_during_read are written by the walker's thread only
            # (the savers count blobs, under the lock): no lock round per file here
            self.summary.bytes_read += r.bytes_read
            if r.changed:
                self.summary.changed_during_read += 1
            if c.racy_content is not None:  # counted now that its content is known
                action = "unchanged" if r.content == c.racy_content else "changed"
                if action == "unchanged":
                    self.summary.files_unchanged += 1
                else:
                    self.summary.files_changed += 1
                if self._tell_unchanged if action == "unchanged" else self._tell_read:
                    self.obs.file(c.path, action)
            self._tick(0)
            return node
        if isinstance(c, dict):
            return c
        assert isinstance(c, Node)
        return c if c.type != FILE or c.content is not None else None

    def _finalize(self, pd: PendingDir) -> None:
        if pd.rec is not None:
            self._finalize_kept(pd, pd.rec)
            return
        maps: list[dict[str, Any]] = []
        for c in pd.children:
            if isinstance(c, Pending) and c.result().changed:
                pd.recordable = False
            n = c.node if isinstance(c, PendingDir) else self._resolve(c)
            if n is not None:
                maps.append(n if isinstance(n, dict) else n.to_map())
        if (pd.parent_maps is not None and pd.parent_subtree is not None
                and maps == pd.parent_maps):
            # identical bytes: no encode, no hash (and no lookup: the parent tree was
            # indexed when it was loaded, and a backup's index only gains entries,
            # parent_index.py)
            pd.node.subtree = pd.parent_subtree
        else:
            pd.node.subtree = self._add(TREE, encode_maps(maps))
        if self.dircache is not None and pd.digest is not None and pd.recordable:
            self.dircache.new[pd.digest] = DirRecord(
                pd.node.subtree,
                b"".join(b for m in maps if m["type"] == FILE for b in m["content"] or ()),
                tuple((m["name"], m["subtree"]) for m in maps if m["type"] == DIR))
        self._done(pd)

    def _finalize_kept(self, pd: PendingDir, rec: DirRecord) -> None:
        """Finish a directory of the cache's fast path: its recorded tree id when every
        subdirectory kept its recorded tree id, else the recorded tree's maps of its
        other entries beside the new subdirectory nodes."""
        subs = tuple((c.node.name, c.node.subtree or b"") for c in pd.children
                     if isinstance(c, PendingDir))
        if subs == rec.subdirs:
            pd.node.subtree = rec.subtree
        else:
            old = {m["name"]: m for m in self._ahead.maps(rec.subtree)}
            maps = [old[n] for n in pd.kept]
            maps += [kept_dir_map(c, old.get(c.node.name)) for c in pd.children
                     if isinstance(c, PendingDir)]
            maps.sort(key=lambda m: bytes(m["name"]))  # the listing's (name) order
            pd.node.subtree = self._add(TREE, encode_maps(maps))
        assert self.dircache is not None and pd.digest is not None
        if pd.recordable:
            self.dircache.new[pd.digest] = DirRecord(pd.node.subtree, rec.blobs, subs)
        self._done(pd)

    def _done(self, pd: PendingDir) -> None:
        pd.done = True
        # The parent needs only pd.node now: drop the entries' maps, or every finished
        # directory keeps them (and the parent snapshot's) until the root is done --
        # O(tree) memory, +20 MiB peak RSS on the 20k-file benchmark corpus.
        pd.children = []
        pd.kept = []
        pd.parent_maps = None

    def _add_tree(self, tree: Tree) -> bytes:
        return self._add(TREE, tree.encode())

    @staticmethod
    def _all_saved(pd: PendingDir) -> bool:
        """Are all of PD's files saved? One look per batch (its files share a future),
        not one lock round per file."""
        seen: Future[list[FileResult]] | None = None
        for c in pd.children:
            if isinstance(c, Pending):
                fut = (c.link_of or c).fut
                if fut is None:  # its batch is not submitted yet
                    return False
                if fut is not seen:
                    if not fut.done():
                        return False
                    seen = fut
        return True

    def _drain(self, block: bool) -> None:
        if block:
            self._submit_batch()
        q = self._queue
        while q:
            pd = q[0]
            if not block and not self._all_saved(pd):
                return
            q.popleft()
            self._finalize(pd)
        self._flush_ticks()

    # ----- entry points -----------------------------------------------------------------

    def archive_path(self, path: bytes, parent: Node | None) -> Node | None:
        """Archive one source path (file, dir, symlink …); returns its finished node."""
        raise_fd_limit()
        head, name = os.path.split(path.rstrip(b"/") or b"/")
        if not name:  # the root directory itself
            head, name = b"/", b"."
        dfd = open_dir_at(None, head or b".")
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                node = node_from_stat(name, path, st)
                pmap = parent.to_map() if parent is not None else None
                if self._reuse_dir(path, node, pmap, None):
                    return node
                psub = parent.subtree if parent is not None and parent.type == DIR else None
                totals = self.obs.totals if self.obs.wants_totals() else None
                prefetch = (Prefetcher([path], self.opt.excluder, on_totals=totals,
                                       one_file_system=self.opt.one_file_system,
                                       skip_dirs=self.opt.skip_dirs).start()
                            if self.opt.prefetch and self.opt.dirty is None else None)
                return self._walk_root(open_dir_at(dfd, name), path, node, psub, st.st_dev,
                                       prefetch)
            pmaps = None if parent is None else {parent.name: parent.to_map()}
            child = self._entry(dfd, head, name, st, pmaps,
                                missing_ids(self.store.index, (pmaps or {}).values()),
                                st.st_dev, b"")
            if isinstance(child, Descend):  # it became a directory since the stat above
                return self._walk_root(child.fd, path, child.node, child.parent_subtree,
                                       st.st_dev)
            if child is None:
                return None
            self._submit_batch()
            done = self._resolve(child)
            return Node.from_map(done) if isinstance(done, dict) else done
        finally:
            os.close(dfd)
            self._flush_ticks()

    def _walk_root(self, fd: int, path: bytes, node: Node, parent_subtree: bytes | None,
                   root_dev: int, prefetch: Prefetcher | None = None) -> Node:
        """Walk a source directory; the prefetcher (if any) is stopped when the walk is
        done, before waiting for the files still being saved."""
        try:
            pd = self._walk(fd, path, node, parent_subtree, root_dev)
        finally:
            os.close(fd)
            if prefetch is not None:
                prefetch.stop()
        self._drain(block=True)
        assert pd.done
        return pd.node

    def save_dir_node(self, node: Node, children: list[Node]) -> Node:
        """Finish a synthetic directory (path prefixes above the sources)."""
        node.subtree = self._add_tree(Tree(children))
        return node

    def save_stream(self, stream: BinaryIO, node: Node) -> Node:
        """Save a stream (``--stdin``) as one file node, cut as it is read."""
        content = []
        total = 0
        for chunk in self.store.chunker.cut_stream(stream):
            content.append(self._add(DATA, chunk))
            total += len(chunk)
        node.content = content
        node.size = total
        self.summary.bytes_read += total
        self.summary.total_size += total
        self.summary.files_new += 1
        return node

    def close(self) -> None:
        try:
            self.saver.close()
        finally:
            self._ahead.close()
