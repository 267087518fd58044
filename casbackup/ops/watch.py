"""watch: turn filesystem changes into snapshots as they happen, and replicate them.

Loop: a watchdog observer feeds a ``ChangeSet`` (see changes.py); after a quiet period
(``debounce``) or at most ``max_delay`` after the first change, an incremental backup
rescans only the dirty directories (and those above them) and keeps the parent snapshot's
subtrees for the rest (``ArchiveOptions.dirty``); then each ``--sync-to`` replica gets the
new snapshot through ``Syncer``.

Invariants:
- The observer starts before the first backup, and that first backup is a full scan
  (stat-compared against the latest snapshot of the same host and paths): changes made
  before the watcher started are never trusted to events. Every later backup's parent is
  the previous one, whose scan began after every event it did not consume.
- Anything that could hide a change (queue overflow, observer error, a rescan request,
  ``full_scan_every`` elapsed) makes the next backup a full scan.
- The snapshot is the commit point (the store flushes first). A scan whose root tree equals
  the parent's writes no snapshot. A failed backup gives its changes back and is retried
  with backoff; a failed replication is retried with the next snapshot or after backoff.
  Neither ends the watch.
- Each backup refreshes the index under its shared lock (gc may have run in between) and
  falls back to a full scan when its parent snapshot was forgotten meanwhile, or when
  index objects went away (gc, or ``repair`` dropping damaged blobs): a clean directory's
  old subtree might then name a blob no index holds, and only a full scan re-checks every
  file's blobs (and re-reads the files that lost some).
- ``stop`` ends the loop; a backup under way finishes first (a second signal, handled by
  the CLI, abandons it: only unreferenced packs remain).
- Each round builds its snapshot as ``backup`` does, through its public
  ``build_root`` (the root tree over the source paths) and ``new_snapshot`` (the
  manifest); only the choice of parent and ``ArchiveOptions.dirty`` are watch's own.
- Never prints: it reports through a ``WatchObserver``. Each snapshot's summary counts
  the reused subtrees too (from a memo of tree totals), so sizes match a full backup's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from watchdog.observers import Observer as FsObserver

from ..errors import CasError, UsageError
from ..model.snapshot import Snapshot
from ..store import Store
from ..store.commit import WriteSession
from .archiver import ArchiveOptions, Archiver
from .backup import build_root, find_parent, new_snapshot, normalize_paths, parent_start_ns
from .changes import Batch, ChangeSet, EventHandler, LostEvents, Sources
from .sync import Cancelled, Copied, Selection, Syncer, SyncObserver, check_paired
from .treewalk import Totals, fold, tree_totals

_TICK = 0.5  # the longest a stop request or a dead observer waits to be noticed
_MAX_BACKOFF = 60.0


@dataclass
class WatchOptions:
    debounce: float = 2.0
    max_delay: float = 60.0
    full_scan_every: float = 3600.0  # 0: only on overflow / request
    tags: list[str] = field(default_factory=list)
    host: str | None = None
    archive: ArchiveOptions = field(default_factory=ArchiveOptions)


@dataclass
class Replica:
    store: Store
    label: str
    pending: list[str] = field(default_factory=list)
    retry_at: float = 0.0
    failures: int = 0


@dataclass
class WatchSnapshot:
    snapshot: Snapshot | None  # None: nothing changed, no snapshot written
    scan: str  # "full" | "partial"
    reason: str
    events: int
    dirs_scanned: int
    dirs_reused: int
    latency_s: float | None  # first change seen -> snapshot committed
    duration_s: float


class WatchObserver(SyncObserver):
    def watching(self, paths: list[str]) -> None:
        """The observer is running (``ready``: after the first backup)."""

    def ready(self) -> None:
        """The first backup is done; every change from now on is seen."""

    def snapshot(self, info: WatchSnapshot) -> None:
        """A backup finished (``info.snapshot`` None: nothing had changed)."""

    def synced(self, replica: str, copied: Copied, latency_s: float | None) -> None:
        """A snapshot reached a replica."""


class _Totals:
    """Files, directories and file bytes below a tree (``treewalk.fold``), memoised:
    trees are immutable."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.memo: dict[bytes, Totals] = {}
        self._lock = threading.Lock()

    def warm(self, root: bytes) -> None:
        """Fill the memo in the background after the first backup (a 100k-file tree takes
        about a second), so the first change after start is not the one to pay for it."""
        def run() -> None:
            with contextlib.suppress(CasError):  # recomputed (and reported) when needed
                self.of(root)

        threading.Thread(target=run, name="watch-totals", daemon=True).start()

    def of(self, root: bytes) -> Totals:
        with self._lock:
            if len(self.memo) > 1_000_000:
                self.memo.clear()
            return fold(self.store.load_tree, root, tree_totals, self.memo)


class _ReplicaObserver(SyncObserver):
    def __init__(self, obs: WatchObserver, label: str) -> None:
        self.obs, self.label = obs, label
        self.first: float | None = None

    def copied(self, copied: Copied, snapshot: Snapshot) -> None:
        lat = None if self.first is None else time.monotonic() - self.first
        self.obs.synced(self.label, copied, lat)

    def warn(self, path: str, message: str) -> None:
        self.obs.warn(path, message)


class Watcher:
    def __init__(self, store: Store, paths: list[str], opts: WatchOptions | None = None,
                 observer: WatchObserver | None = None, stop: threading.Event | None = None,
                 replicas: list[Replica] | None = None) -> None:
        self.store = store
        self.opts = opts or WatchOptions()
        self.obs = observer or WatchObserver()
        self.stop = stop or threading.Event()
        self.bpaths = normalize_paths(paths)
        self.spaths = [os.fsdecode(p) for p in self.bpaths]
        self.host = self.opts.host or socket.gethostname()
        self.replicas = replicas or []
        self.syncers: list[tuple[Replica, Syncer, _ReplicaObserver]] = []
        for r in self.replicas:
            check_paired(store, r.store)
            ro = _ReplicaObserver(self.obs, r.label)
            self.syncers.append((r, Syncer(store, r.store, ro, self.stop), ro))
        self.changes = ChangeSet()
        self.sources = Sources(self.bpaths, self.opts.archive.excluder,
                               self._stores_inside_sources())
        self.parent: Snapshot | None = None
        self.totals = _Totals(store)
        self._failures = 0
        self._retry_at = 0.0
        self._watch_down = False
        self._watch_retry_at = 0.0

    def _stores_inside_sources(self) -> list[bytes]:
        """Local stores (this one and replicas) under a source must be excluded there."""
        out = []
        for st in [self.store, *(r.store for r in self.replicas)]:
            root = st.local_path()
            if root is None:
                continue
            rb = os.fsencode(os.path.abspath(root))
            for src in self.bpaths:
                if Sources.under(rb, src) and os.path.isdir(src):
                    rel = rb[len(src):].lstrip(b"/")
                    probe = Sources([src], self.opts.archive.excluder, [])
                    if not rel or probe.exclusion(rel, True, src) is None:
                        raise UsageError(
                            f"store {root} is inside the watched path {os.fsdecode(src)}: "
                            f"every snapshot would change the source; exclude it (--exclude "
                            f"'/{os.fsdecode(rel)}/') or keep the store elsewhere")
            out.append(rb)
        return out

    def request_full_scan(self, reason: str = "rescan request") -> None:
        self.changes.mark_all(reason)

    # ----- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        log = logging.getLogger("watchdog")
        lost = LostEvents(self.changes)
        log.addHandler(lost)
        fs = self._start_observer()
        try:
            self.obs.watching(self.spaths)
            self._cycle(Batch(None, 0, None, "initial"))
            if self.parent is not None:
                self.totals.warm(self.parent.tree)
            self.obs.ready()
            next_full = time.monotonic() + self.opts.full_scan_every
            while not self.stop.is_set():
                self.changes.wake.clear()
                fs = self._check_observer(fs)
                now = time.monotonic()
                if self.opts.full_scan_every and now >= next_full:
                    self.changes.mark_all("periodic full scan")
                    next_full = now + self.opts.full_scan_every
                due = self.changes.due_in(self.opts.debounce, self.opts.max_delay, now)
                if due == 0.0 and now >= self._retry_at:
                    batch = self.changes.take()
                    self._cycle(batch)
                    continue
                self._retry_replicas(now)
                wait = _TICK if due is None else max(due, self._retry_at - now, 0.01)
                self.changes.wake.wait(min(_TICK, wait))
        finally:
            fs.stop()
            fs.join(5)
            log.removeHandler(lost)

    def _start_observer(self) -> Any:
        for p in self.bpaths:  # watchdog "watches" a missing path without telling
            if not os.path.lexists(p):
                raise FileNotFoundError(errno.ENOENT, "source path does not exist", p)
        fs = FsObserver()
        handler = EventHandler(self.changes, self.sources)
        dirs = [p for p in self.bpaths if os.path.isdir(p)]
        for p in self.bpaths:
            if any(Sources.under(p, d) and p != d for d in dirs):
                continue  # inside another source, already watched recursively
            if p in dirs:
                fs.schedule(handler, os.fsdecode(p), recursive=True)
            else:
                fs.schedule(handler, os.fsdecode(os.path.dirname(p)), recursive=False)
        fs.start()
        return fs

    def _check_observer(self, fs: Any) -> Any:
        """A dead emitter (e.g. its directory was deleted) loses events: full scan, and
        watch again (retried every tick until the sources exist)."""
        if fs.is_alive() and all(e.is_alive() for e in list(fs.emitters)):
            self._watch_down = False
            return fs
        now = time.monotonic()
        if now < self._watch_retry_at:
            return fs
        self._watch_retry_at = now + 1.0
        self.changes.mark_all("watcher error: an observer thread stopped")
        fs.stop()
        try:
            return self._start_observer()
        except OSError as e:
            if not self._watch_down:  # once per outage, not every retry
                self.obs.warn(os.fsdecode(e.filename or self.spaths[0]),
                              f"cannot watch: {e.strerror or e}")
            self._watch_down = True
            return fs

    def _cycle(self, batch: Batch) -> None:
        try:
            info = self._snapshot(batch)
        except (CasError, OSError) as e:
            self.changes.restore(batch)
            self._failures += 1
            self._retry_at = time.monotonic() + min(_MAX_BACKOFF, 2.0 ** self._failures)
            msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            where = getattr(e, "filename", None) or self.spaths[0]
            self.obs.warn(os.fsdecode(where), f"backup failed: {msg} (will retry)")
            return
        self._failures = 0
        self.obs.snapshot(info)
        if info.snapshot is not None:
            for r, _, _ in self.syncers:
                r.pending.append(info.snapshot.id)
            self._replicate(batch.first)

    def _snapshot(self, batch: Batch) -> WatchSnapshot:
        start = time.monotonic()
        t0 = time.time()
        with WriteSession(self.store, "watch"):
            # gc may have run since the last backup (we held no lock): see its index, and
            # if our parent was forgotten its blobs may be gone: start from a full scan
            rebuilds = self.store.index_rebuilds
            self.store.refresh_index()
            if self.parent is not None and self.parent.id not in self.store.snapshot_ids():
                self.parent = None
            parent = self.parent or find_parent(self.store, "incremental", self.host, self.spaths)
            dirty = batch.dirty if self.parent is not None else None
            reason = batch.reason
            if dirty is not None and self.store.index_rebuilds != rebuilds:
                # index objects went away (gc, or repair dropping damaged blobs): a clean
                # directory's subtree may name blobs no longer indexed, so check every file
                # (the archiver re-reads a file whose blobs are not all indexed)
                dirty, reason = None, "index rebuilt (gc or repair ran)"
            if dirty is not None and self.store.excluded:
                # a gc record is pending: a clean directory's unread subtree could name a
                # blob only its condemned packs hold (DESIGN §8 W1)
                dirty, reason = None, "gc records pending"
            if parent is not None and parent.tree not in self.store.index:
                parent, dirty = None, None  # condemned by a gc beside us: a full scan
            parent_root = self.store.load_tree(parent.tree) if parent is not None else None
            arch = Archiver(self.store, self.obs, replace(
                self.opts.archive, dirty=dirty, parent_start_ns=parent_start_ns(parent)))
            try:
                root_id = build_root(arch, self.store, self.bpaths, parent_root)
            finally:
                arch.close()
            s = arch.summary
            scanned = s.dirs
            for n in arch.reused:
                assert n.subtree is not None
                files, dirs, size = self.totals.of(n.subtree)
                s.total_size += size
                s.files_unchanged += files
                s.dirs += dirs + 1
            snap = None
            if parent is None or root_id != parent.tree:
                s.duration = time.monotonic() - start
                snap = new_snapshot(t0, self.host, self.spaths, root_id, "incremental",
                                    self.opts.tags, parent, s)
                self.store.save_snapshot(snap)
                parent = snap
            else:
                self.store.flush()  # nothing pending between backups (refresh_index)
            self.parent = parent
        now = time.monotonic()
        return WatchSnapshot(
            snap, "full" if dirty is None else "partial", reason, batch.events, scanned,
            len(arch.reused), None if batch.first is None else now - batch.first, now - start)

    def _replicate(self, first: float | None) -> None:
        for r, syncer, ro in self.syncers:
            if not r.pending or self.stop.is_set() or time.monotonic() < r.retry_at:
                continue  # a failing replica waits for its backoff, not for each snapshot
            ro.first = first
            try:
                syncer.run(Selection(ids=list(r.pending), strict=False))
                r.pending.clear()
                r.failures = 0
            except Cancelled:
                return
            except CasError as e:
                r.failures += 1
                r.retry_at = time.monotonic() + min(_MAX_BACKOFF, 2.0 ** r.failures)
                self.obs.warn(r.label, f"replication failed (will retry): {e}")

    def _retry_replicas(self, now: float) -> None:
        if any(r.pending and now >= r.retry_at for r, _, _ in self.syncers):
            self._replicate(None)


def watch(store: Store, paths: list[str], opts: WatchOptions | None = None,
          observer: WatchObserver | None = None, stop: threading.Event | None = None,
          replicas: list[Replica] | None = None) -> None:
    """Watch ``paths`` and snapshot them into ``store`` until ``stop`` is set."""
    Watcher(store, paths, opts, observer, stop, replicas).run()
