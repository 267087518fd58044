"""sync: copy snapshots from a source store to a destination with only the missing blobs.

Invariants:
- Stores are *paired* when they share the id key (``init --from``): a BlobId names the
  same plaintext in both, so blobs move without re-chunking: each is unsealed with the
  source's codec (re-checking its id) and re-sealed by the destination's, so master keys
  may differ. Unpaired stores are refused with a ``UsageError`` saying how to pair them.
- A copied snapshot records ``original`` = the id of the snapshot where it was first made:
  the source's ``original`` if it has one, else its id (as restic does, so A→B→C then A→C
  never copies twice). A source snapshot is *present* in the destination when its id or
  its ``original`` equals the id or the ``original`` of a destination snapshot; present
  snapshots are never copied again. ``parent`` is mapped to the parent's copy when there is
  one, else kept.
- Crash safety (DESIGN §9): blobs go through the destination's packer (pack, then index
  every few packs); the snapshot is written last by ``save_snapshot``, which flushes first.
  A kill leaves only unreferenced packs, and a rerun skips every blob already indexed.
- Trust: a blob is present iff its id is in the destination's index (an index object is
  written only after its packs). A present *tree* says nothing about what is below it (a
  killed run may have indexed a tree before its data), so trees are always descended —
  except a subtree whose id equals the one at the same path in a *committed* destination
  snapshot (the copy of the source snapshot's parent, else the latest destination snapshot
  of the same host and paths): all of it is there. An incremental sync therefore costs
  O(changed directories), not O(tree).
- Locks: shared on both stores for a whole run. The source's snapshots are listed before
  its index is refreshed, so every listed snapshot's blobs are indexed (§9.2).
- Never prints: progress and each copied snapshot go to a ``SyncObserver``.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import CasError, IntegrityError, NothingMatched, SnapshotNotFound, UsageError
from ..faults import crash_point
from ..ids import TREE
from ..model.snapshot import Snapshot
from ..model.tree import DIR, Tree
from ..store import PackEntry, Store, paired_key
from ..store.commit import WriteSession
from ..store.locks import shared_lock
from .observer import Observer
from .snapsel import ANY, SnapshotFilter, pick
from .treewalk import Entry, walk

_BATCH = 4096  # data blobs collected from trees before they are copied


class Cancelled(CasError):
    """A stop was requested (SIGINT/SIGTERM in ``--watch``): nothing was committed."""

    exit_code = 130


@dataclass(slots=True)
class Copied:
    src_id: str
    dst_id: str
    blobs: int = 0  # data and tree blobs added to the destination
    trees: int = 0
    bytes: int = 0  # their plaintext bytes
    stored: int = 0  # their sealed bytes


@dataclass
class SyncResult:
    listed: int = 0  # the source's snapshots
    selected: int = 0
    present: int = 0  # selected snapshots already in the destination
    copied: list[Copied] = field(default_factory=list)

    @property
    def blobs(self) -> int:
        return sum(c.blobs for c in self.copied)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.copied)

    @property
    def stored(self) -> int:
        return sum(c.stored for c in self.copied)


class SyncObserver(Observer):
    def copied(self, copied: Copied, snapshot: Snapshot) -> None:
        """A snapshot was committed in the destination."""


@dataclass
class Selection:
    """Which source snapshots to copy: all those the filter (``snapsel.SnapshotFilter``:
    ``--host`` any of, ``--tag a,b`` a group, ``--path`` all of) accepts, or the ones
    ``ids`` (prefixes, ``latest``) name among them (``snapsel.pick``)."""

    ids: list[str] = field(default_factory=list)
    filt: SnapshotFilter = ANY
    strict: bool = True  # an id that matches nothing is an error (False: skipped)

    def choose(self, snaps: list[Snapshot]) -> list[Snapshot]:
        filt = self.filt
        if not self.ids:
            return [s for s in snaps if filt.match(s)]
        chosen: dict[str, Snapshot] = {}
        for ref in self.ids:
            try:
                s = pick(snaps, ref, filt)
            except (SnapshotNotFound, NothingMatched):
                if self.strict:
                    raise
                continue
            chosen[s.id] = s
        return sorted(chosen.values(), key=lambda s: (s.time, s.id))


__all__ = ["Cancelled", "Copied", "SyncResult", "SyncObserver", "Selection", "Syncer",
           "check_paired", "paired_key", "sync"]  # paired_key: the store's, for ``init --from``


def check_paired(src: Store, dst: Store) -> None:
    if src.codec.id_key != dst.codec.id_key:
        raise UsageError(
            f"stores {src.url or 'SRC'} and {dst.url or 'DST'} are not paired (their id keys "
            "differ), so blobs cannot be copied without re-chunking; make the destination "
            "with `casbackup init --store DST --from SRC` and sync into that")


class SnapshotCache:
    """The snapshots of a store, re-listed on ``refresh`` and loaded once each."""

    def __init__(self, store: Store, observer: Observer) -> None:
        self.store = store
        self.obs = observer
        self._snaps: dict[str, Snapshot] = {}

    def refresh(self) -> list[Snapshot]:
        ids = set(self.store.snapshot_ids())
        for gone in set(self._snaps) - ids:
            del self._snaps[gone]
        for name in ids - set(self._snaps):
            try:
                self._snaps[name] = self.store.load_snapshot(name)
            except IntegrityError as e:  # damaged (verify names it) or deleted meanwhile
                self.obs.warn(f"{self.store.url} snapshots/{name[:16]}", str(e))
        return self.list()

    def add(self, snap: Snapshot) -> None:
        self._snaps[snap.id] = snap

    def list(self) -> list[Snapshot]:
        return sorted(self._snaps.values(), key=lambda s: (s.time, s.id))


class Syncer:
    """Copies snapshots from ``src`` to ``dst``; keep one for repeated runs (``--watch``)."""

    def __init__(self, src: Store, dst: Store, observer: SyncObserver | None = None,
                 stop: threading.Event | None = None, workers: int = 4) -> None:
        check_paired(src, dst)
        self.src, self.dst = src, dst
        self.obs = observer or SyncObserver()
        self.stop = stop or threading.Event()
        self.workers = workers
        self.src_snaps = SnapshotCache(src, self.obs)
        self.dst_snaps = SnapshotCache(dst, self.obs)
        self._mu = threading.Lock()

    def run(self, selection: Selection | None = None) -> SyncResult:
        with shared_lock(self.src, "sync", read_only=True), WriteSession(self.dst, "sync"):
            return self._run(selection or Selection())

    def _run(self, selection: Selection) -> SyncResult:
        listed = self.src_snaps.refresh()
        chosen = selection.choose(listed)
        self.src.refresh_index()  # after listing: covers every listed snapshot
        self.dst_snaps.refresh()
        self.dst.refresh_index()
        present: dict[str, Snapshot] = {}
        for d in self.dst_snaps.list():
            present[d.id] = d
            if d.original:
                present[d.original] = d
        res = SyncResult(listed=len(listed), selected=len(chosen))
        todo = sum(1 for s in chosen if s.id not in present
                   and (s.original is None or s.original not in present))
        self.obs.start("sync", total_files=todo, unit="snapshots")
        try:
            for s in chosen:
                if s.id in present or (s.original is not None and s.original in present):
                    res.present += 1
                    continue
                copy, new = self._copy(s, present)
                for k in (s.id, s.original, new.id):
                    if k:
                        present[k] = new
                res.copied.append(copy)
                self.obs.progress(0, 1)
                self.obs.copied(copy, new)
        finally:
            self.obs.finish()
        return res

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Cancelled("sync stopped before the snapshot was written (nothing committed)")

    # ----- one snapshot ----------------------------------------------------------------

    def _reference(self, s: Snapshot, present: dict[str, Snapshot]) -> bytes | None:
        """The root tree of a committed destination snapshot to diff against."""
        if s.parent and s.parent in present:
            return present[s.parent].tree
        same = [d for d in self.dst_snaps.list()
                if d.hostname == s.hostname and sorted(d.paths) == sorted(s.paths)]
        return same[-1].tree if same else None

    def _copy(self, s: Snapshot, present: dict[str, Snapshot]) -> tuple[Copied, Snapshot]:
        c = Copied(s.id, "")
        self._walk(s.tree, self._reference(s, present), c)
        self._check_stop()
        self.dst.flush()  # save_snapshot flushes too; here so the crash point sees it done
        crash_point("sync:before-snapshot")
        parent = present[s.parent].id if s.parent and s.parent in present else s.parent
        new = Snapshot(time=s.time, hostname=s.hostname, username=s.username,
                       paths=list(s.paths), tree=s.tree, type=s.type, tags=list(s.tags),
                       parent=parent, original=s.original or s.id, summary=s.summary)
        c.dst_id = self.dst.save_snapshot(new)  # flushes packs and index first
        self.dst_snaps.add(new)
        return c, new

    def _ref_tree(self, rid: bytes | None) -> Tree | None:
        if rid is None:
            return None
        try:
            return self.dst.load_tree(rid)
        except IntegrityError:
            return None  # a damaged destination is verify's business: just copy more

    def _walk(self, root: bytes, ref: bytes | None, c: Copied) -> None:
        """Add every missing tree below ``root``; copy missing data blobs in batches."""
        if root == ref and self.dst.has_blob(root):
            return
        refs: dict[bytes, bytes | None] = {root: ref}  # tree -> its reference tree
        blobs: set[bytes] = set()
        missing: list[bytes] = []

        def load(tid: bytes) -> Tree:
            raw = self.src.get_blob(tid)  # the exact bytes: never re-encoded
            tree = Tree.decode(raw, tid)
            if not self.dst.has_blob(tid):
                r = self.dst.add_blob(TREE, raw, tid)
                if r.added:
                    c.blobs += 1
                    c.trees += 1
                    c.bytes += len(raw)
                    c.stored += r.stored
            self._check_stop()
            return tree

        def descend(e: Entry) -> bool:
            sub = e.node.subtree
            rtree = self._ref_tree(refs[e.tree_id])
            rn = rtree.find(e.node.name) if rtree is not None else None
            rid = rn.subtree if rn is not None and rn.type == DIR else None
            if sub is None or (sub == rid and self.dst.has_blob(sub)):
                return False  # (not indexed: condemned by a gc beside us -- copy it again)
            refs[sub] = rid
            return True

        for e in walk(load, root, once=True, descend=descend):
            for b in e.node.content or ():
                if b not in blobs and not self.dst.has_blob(b):
                    blobs.add(b)
                    missing.append(b)
            if len(missing) >= _BATCH:
                self._copy_data(missing, c)
                missing = []
        self._copy_data(missing, c)

    # ----- data blobs, read from each source pack in few ranged requests -----------------

    def _copy_data(self, ids: list[bytes], c: Copied) -> None:
        if not ids:
            return
        by_pack: dict[str, list[PackEntry]] = defaultdict(list)
        for b in ids:
            loc = self.src.locate(b)
            by_pack[loc.pack].append(loc.entry)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="sync") as pool:
            for f in [pool.submit(self._copy_pack, p, es, c) for p, es in by_pack.items()]:
                f.result()

    def _copy_pack(self, pack: str, entries: list[PackEntry], c: Copied) -> None:
        for blob in self.src.stream_blobs(pack, entries):  # coalesced reads, each checked
            self._check_stop()
            try:
                e, plain = blob.entry, blob.checked()
            except IntegrityError as err:
                raise IntegrityError(f"source {err}") from None
            r = self.dst.add_blob(e.kind, plain, e.id)  # sealed from the view at once
            if r.added:
                with self._mu:
                    c.blobs += 1
                    c.bytes += len(plain)
                    c.stored += r.stored
            self.obs.progress(len(plain))


def sync(src: Store, dst: Store, selection: Selection | None = None,
         observer: SyncObserver | None = None, stop: threading.Event | None = None,
         workers: int = max(2, min(8, (os.cpu_count() or 2) * 2))) -> SyncResult:
    """Copy the selected snapshots the destination lacks (one run)."""
    return Syncer(src, dst, observer, stop, workers).run(selection)
