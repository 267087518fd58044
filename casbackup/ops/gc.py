"""gc (alias prune): delete what no snapshot references, repack what is mostly garbage,
in two phases so that it runs beside backups (DESIGN §8, rules G1-G5).

gc holds a *maintenance* session: exclusive only against another gc or repair; backups,
syncs, restores and verifies run beside it. One run:

1. *List*: the gc records (``gc/``), every index object, the packs (listing L: it holds
   every pack those name unless one is really missing), then the locks (listing K).
   Each record whose waiting set has no live session in K is *ripe*; a record without a
   waiting set gets K's sessions as one.
2. *Mark* live BlobIds from every snapshot and from the ``intent`` root of every lock
   object in K (stale ones too), resolving blobs in indexed and in condemned packs (each
   distinct tree once). A damaged or unresolvable snapshot tree aborts before anything
   is written; an unresolvable intent is skipped (its writer fails its own check).
3. *Plan*, per pack not already condemned: a blob is live in the pack the index resolves
   it to. A pack with nothing live is to be dropped, a pack whose unused share exceeds
   ``max_unused`` is repacked, a pack no index names is dropped -- but only if it is
   *condemnable*: no live session other than ours was in K, or its backend mtime is at
   most the epoch (record mtime) of a ripe record. Others wait for a later run.
4. *Write*: (a) repack live blobs into new packs (durable first); (b) the consolidated
   index naming every surviving pack (not the condemned ones), superseding every old
   index object; (c) a record ``gc/<id>`` condemning the dropped and repacked packs with
   their index entries; (d) a lock listing -> the record's waiting set; (e) delete the
   old index objects.
5. *Phase 2* of each ripe record, and of the new one when its waiting set has no live
   session (waiting up to ``max_wait`` seconds for that): after a fresh lock listing,
   mark the snapshots not yet marked and every intent; condemned packs holding a blob
   marked live that has no other surviving copy are resurrected (an index object
   re-names them), the others deleted, then the record goes.

A crash anywhere leaves a consistent store: old and new index objects may coexist, a
record may lack its waiting set (the next run writes one), condemned packs stay until a
later phase 2 deletes them. No index object names a pack a record condemned except
resurrected ones, and a pack is deleted only by phase 2 of a ripe record.

Crash points (``CASBACKUP_TEST_CRASH_AT``): ``gc:repack-pack`` (after each new pack),
``gc:after-repack``, ``gc:after-index``, ``gc:after-record``, ``gc:index-delete`` (after
each old index object), ``gc:pack-delete`` (after each pack). ``dry_run`` plans and
reports only. On a failure (no space left) the packs this run wrote and no index names
are deleted before the error propagates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..clock import SYSTEM, Clock
from ..errors import IntegrityError, PermanentError, UsageError
from ..faults import crash_point
from ..model.tree import Tree
from ..store import ObjectInfo, Store, maintainer, pack_key
from ..store import gcrecords as gr
from ..store.identity import Identity
from ..store.index import Index, Location, PackInfo
from ..store.locks import LockInfo, Session, by_session, live_sessions, session
from .capabilities import Maintainer
from .observer import NULL, Observer
from .treewalk import walk

DEFAULT_MAX_UNUSED = 0.05
DEFAULT_KEEP_UNINDEXED = 3600.0  # the CLI option is accepted; the two-phase rule replaced it
DEFAULT_MAX_WAIT = 10.0  # seconds a run waits for sessions before leaving the record
POLL = 1.0


@dataclass
class GcOptions:
    max_unused: float = DEFAULT_MAX_UNUSED  # share of a pack, 0..1
    dry_run: bool = False
    keep_unindexed_for: float = DEFAULT_KEEP_UNINDEXED  # unused (two-phase gc, DESIGN §8)
    retry_lock: float = 0.0  # seconds
    # dry run only: plan as if these snapshots were forgotten (forget --dry-run --prune)
    assume_forgotten: frozenset[str] = frozenset()
    max_wait: float = DEFAULT_MAX_WAIT  # seconds to wait for sessions before phase 2


@dataclass
class GcReport:
    dry_run: bool = False
    snapshots: int = 0
    trees: int = 0
    live_blobs: int = 0
    missing_blobs: int = 0  # referenced but in no index (verify names them)
    packs_before: int = 0
    packs_after: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    packs_dropped: int = 0  # indexed, missing on the backend, nothing live in them
    packs_condemned: int = 0  # put in a gc record this run
    packs_removed: int = 0  # actually deleted this run (phase 2)
    packs_resurrected: int = 0  # condemned, then found in use and indexed again
    packs_deferred: int = 0  # unused but maybe a running writer's: a later run
    blobs_repacked: int = 0
    orphans_deleted: int = 0
    orphans_kept: int = 0
    index_before: int = 0
    index_after: int = 0
    records_done: int = 0
    records_waiting: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    bytes_freed: int = 0
    bytes_written: int = 0
    waiting: list[str] = field(default_factory=list)  # what waits for which session
    warnings: list[str] = field(default_factory=list)

    def to_map(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Plan:
    keep: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    repack: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    live_bytes: dict[str, int] = field(default_factory=dict)  # of packs to repack

    def condemned(self) -> list[str]:
        return self.delete + self.repack + self.orphans


def header_bound(n: int) -> int:
    """An upper bound of a pack's sealed header + trailer for ``n`` blobs (each row is
    at most ~56 msgpack bytes; the seal adds a tag, a nonce and a MAC)."""
    return 96 + 64 * n


def gc(store: Store, opts: GcOptions | None = None, observer: Observer = NULL,
       clock: Clock = SYSTEM, me: Identity | None = None) -> GcReport:
    opts = opts or GcOptions()
    with session(store, "gc", maintenance=True, retry=opts.retry_lock, clock=clock,
                 me=me) as lock:
        assert lock is not None
        try:
            return _Gc(store, lock, opts, observer, clock).run()
        except PermanentError as e:
            if opts.dry_run or opts.max_unused >= 1.0 or not _no_space(e):
                raise
        # a nearly full store: delete what is wholly unused first (this run's new packs
        # are gone again), then repack into the space that freed
        _Gc(store, lock, replace(opts, max_unused=1.0), observer, clock).run()
        return _Gc(store, lock, opts, observer, clock).run()


def _no_space(e: PermanentError) -> bool:
    text = str(e).lower()
    return "no space" in text or "quota" in text


class Marker:
    """Live BlobIds from snapshots and intents, each distinct tree read once, resolving
    blobs through ``index`` (indexed and condemned packs)."""

    def __init__(self, store: Store, index: Index, observer: Observer = NULL) -> None:
        self.store, self.index, self.observer = store, index, observer
        self.mt: Maintainer = maintainer(store)
        self.live: set[bytes] = set()
        self.trees: set[bytes] = set()
        self.missing: set[bytes] = set()
        self.marked: set[str] = set()
        self.snapshots = 0
        self.seen_objects: set[str] = set(store.index.objects)

    def _newer(self, blob: bytes) -> Location | None:
        """A snapshot committed after gc loaded the index has its trees in index objects
        written since (writers flush the index before committing): read those."""
        for name in self.mt.index_names():
            if name not in self.seen_objects:
                self.seen_objects.add(name)
                with contextlib.suppress(IntegrityError):  # consolidated meanwhile
                    for p in self.store.read_index_object(name):
                        self.index.add_pack(p)
        return self.index.get(blob)

    def snapshots_now(self, skip: Iterable[str] = ()) -> None:
        skip = set(skip) | self.marked
        for sid in self.store.snapshot_ids():
            if sid in skip:
                continue
            snap = self.mt.load_snapshot_if_present(sid)
            if snap is None:
                continue  # forgotten meanwhile: keeping more is safe
            self.marked.add(sid)
            self.snapshots += 1
            self._walk(snap.tree, f"snapshot {sid[:8]}")

    def intents(self, locks: Iterable[LockInfo]) -> None:
        for lk in locks:
            if lk.intent is not None:
                self._walk(lk.intent, None)

    def _walk(self, root: bytes, what: str | None) -> None:
        """Mark every tree and data blob below ROOT (``treewalk.walk``, each distinct tree
        once over all of this marker's walks). WHAT names a snapshot: a tree of it that
        cannot be read ends gc; an intent's (WHAT None) is passed over, since its writer
        fails its own check, and is not remembered as marked."""
        def load(tid: bytes) -> Tree:
            loc = self.index.get(tid) or self._newer(tid)
            if loc is None:
                if what is None:
                    return _EMPTY
                raise IntegrityError(f"tree {tid.hex()[:16]} of {what} is in no index; gc "
                                     "cannot tell what is used: run `casbackup verify`, "
                                     "then `repair`")
            try:
                e = loc.entry
                tree = Tree.decode(self.store.unseal_entry(
                    e, self.store.read_pack_range(loc.pack, e.offset, e.length)))
            except IntegrityError as err:
                if what is None:
                    return _EMPTY
                raise IntegrityError(f"{what}: {err}; gc stopped before changing "
                                     "anything: run `casbackup verify`") from None
            self.trees.add(tid)
            self.live.add(tid)
            self.observer.progress(0, 1)
            return tree

        # a snapshot's walk shares the marked set; an intent's walks a copy, so a tree it
        # could not read is still read (and fails) when a snapshot names it
        seen = self.trees if what is not None else set(self.trees)
        for e in walk(load, root, once=True, seen=seen):
            for b in e.node.content or ():
                (self.live if b in self.index else self.missing).add(b)


_EMPTY = Tree([])


class _Gc:
    def __init__(self, store: Store, lock: Session, opts: GcOptions, observer: Observer,
                 clock: Clock) -> None:
        self.store, self.lock, self.opts, self.obs, self.clock = (
            store, lock, opts, observer, clock)
        self.mt: Maintainer = maintainer(store)
        self.rep = GcReport(dry_run=opts.dry_run)
        self._deleted: set[str] = set()
        self._live: set[bytes] = set()
        self._waiting: set[str] = set()
        self.known_index: set[str] = set()

    def _sessions(self) -> tuple[dict[str, LockInfo], set[str]]:
        """(other sessions now, stale or not; the live ones among them)."""
        locks, ref = self.lock.listing()
        now = self.clock.time()
        others = {s: lk for s, lk in by_session(locks).items() if s != self.lock.id}
        return others, set(live_sessions(locks, now, ref, self.lock.me)) - {self.lock.id}

    def run(self) -> GcReport:
        st, opts, rep = self.store, self.opts, self.rep
        if opts.assume_forgotten and not opts.dry_run:
            raise UsageError("assume_forgotten is only for a dry run")
        self.mt.reset_index()
        st.exclude_packs(())
        records = gr.list_records(st)
        index = st.load_full_index()  # before the pack listing: every pack it names is listed
        listing = self.mt.pack_listing()
        old_index = list(index.objects)
        rep.index_before, rep.packs_before = len(old_index), len(listing)
        rep.bytes_before = sum(i.size for i in listing.values())
        others, live_sessions = self._sessions()
        for r in records:
            if r.sessions is None:
                r.sessions = frozenset(others)
                if not opts.dry_run:
                    gr.write_sessions(st, r.name, r.sessions)
        ripe = [r for r in records if r.sessions is not None
                and not r.sessions & live_sessions]
        pending = [r for r in records if r not in ripe]
        cond_all = gr.condemned(records)

        full = Index()  # resolves blobs in indexed and in condemned packs
        for p in index.iter_packs():
            full.add_pack(p)
        for r in records:
            for p in r.packs.values():
                full.add_pack(p)
        self.obs.start("gc: mark", unit="trees")
        marker = Marker(st, full, self.obs)
        marker.snapshots_now(opts.assume_forgotten)
        marker.intents(others.values())
        self.obs.finish()
        self._live = marker.live
        self.marker = marker
        clean = Index()  # the surviving packs: indexed, not condemned
        for p in index.iter_packs():
            if p.name not in cond_all:
                clean.add_pack(p)
        keep = gr.condemned(pending)
        back = 0
        # condemned (by any record, ripe or not: a gc killed before its second mark left
        # one), but used after all: back into the consolidated index
        for r in records:
            for name, p in r.packs.items():
                info = full.packs.get(name, p)
                if (name in listing and name not in clean.packs
                        and any(e.id in marker.live and e.id not in clean
                                for e in info.entries)):
                    clean.add_pack(info)
                    back += 1
        rep.packs_resurrected = back
        missing = {b for b in marker.missing if b not in full}
        rep.snapshots, rep.trees = marker.snapshots, len(marker.trees)
        rep.live_blobs, rep.missing_blobs = len(marker.live), len(missing)
        if missing:
            rep.warnings.append(f"{len(missing)} referenced blob(s) are in no index "
                                "(damaged store: run `casbackup verify`)")
        epoch = max((r.mtime for r in ripe), default=0.0)
        plan = self._plan(clean, listing, marker.live, cond_all,
                          fresh_ok=not live_sessions, epoch=epoch)
        rep.packs_deleted, rep.packs_repacked = len(plan.delete), len(plan.repack)
        rep.packs_dropped = len(plan.dropped)
        rep.orphans_deleted = len(plan.orphans)
        rewrite = bool(plan.condemned() or plan.dropped or len(old_index) > 1
                       or index.packs.keys() & cond_all or back)
        if opts.dry_run:
            self._dry_run(index, plan, listing, old_index, rewrite)
            return rep

        # another gc (not provably dead: maybe only paused) may still write what it
        # planned, so this run deletes nothing while its lock exists
        maint = [lk for lk in others.values() if lk.maintenance and not lk.dead(self.lock.me)]
        rname, new_packs, current, survive = self._write(
            clean, plan, listing, old_index, rewrite, marker, live_sessions)
        for name in old_index:
            if name not in current:
                self.mt.delete_index(name)
                crash_point("gc:index-delete")
        self.known_index = set(current)
        if maint:
            lk = maint[0]
            rep.waiting.append(f"deleting waits for {lk.operation} (pid {lk.pid} on "
                               f"{lk.hostname}); if it is stale, `casbackup unlock`")
            self._waiting.update(r.name for r in records)
        else:
            self._phase2(ripe, marker.live, survive, full, listing, keep)
        for r in pending:
            self._report_wait(r, others, live_sessions)
        if rname and not maint:
            self._finish_record(rname, marker, survive, full, listing, keep)
        if not gr.list_records(st):  # the epoch the next run's G2 measures packs by
            self._record(clean, _Plan(), listing)
        rep.index_after = len(self.mt.index_names())
        rep.records_waiting = len(self._waiting)
        self.mt.reset_index()
        after = (listing.keys() - self._deleted) | {p.name for p in new_packs}
        rep.packs_after = len(after)
        rep.bytes_after = (sum(listing[n].size for n in after if n in listing)
                           + sum(p.size for p in new_packs if p.name not in listing))
        rep.bytes_freed = rep.bytes_before - rep.bytes_after
        rep.packs_removed = len(self._deleted)
        return rep

    def _plan(self, clean: Index, listing: dict[str, ObjectInfo], live: set[bytes],
              cond_all: set[str], fresh_ok: bool, epoch: float) -> _Plan:
        plan = _Plan()
        rep, opts = self.rep, self.opts

        def condemnable(name: str) -> bool:
            return fresh_ok or (epoch > 0 and 0 < listing[name].mtime <= epoch)

        missing_live: list[str] = []
        for name, info in clean.packs.items():
            live_n = live_bytes = 0
            for e in info.entries:
                loc = clean.blobs.get(e.id)
                if e.id in live and loc is not None and loc.pack == name:
                    live_n += 1
                    live_bytes += e.length
            if name not in listing:
                if live_n:
                    missing_live.append(f"{pack_key(name)} ({live_n} blobs in use)")
                else:
                    plan.dropped.append(name)
                continue
            size = listing[name].size
            unused = live_n == 0 or (size - live_bytes - header_bound(live_n)
                                     > opts.max_unused * size)
            if unused and not condemnable(name):
                rep.packs_deferred += 1
                plan.keep.append(name)
            elif live_n == 0:
                plan.delete.append(name)
            elif unused:
                plan.repack.append(name)
                plan.live_bytes[name] = live_bytes + header_bound(live_n)
            else:
                plan.keep.append(name)
        if missing_live:
            raise IntegrityError(f"{len(missing_live)} pack(s) missing but still in use: "
                                 f"{', '.join(missing_live[:3])}; gc stopped before "
                                 "changing anything: run `casbackup verify` and "
                                 "`casbackup repair`")
        for name in listing:
            if name in clean.packs or name in cond_all:
                continue
            if condemnable(name):
                plan.orphans.append(name)
            else:
                rep.orphans_kept += 1
        if rep.orphans_kept or rep.packs_deferred:
            rep.warnings.append(
                f"kept {rep.orphans_kept + rep.packs_deferred} unused pack(s) that a "
                "running backup may still use: a later gc condemns them")
        return plan

    def _dry_run(self, index: Index, plan: _Plan, listing: dict[str, ObjectInfo],
                 old_index: list[str], rewrite: bool) -> None:
        rep = self.rep
        rep.bytes_written = sum(plan.live_bytes.values())
        by_kind: dict[str, int] = {}
        for n, b in plan.live_bytes.items():
            by_kind[index.packs[n].kind] = by_kind.get(index.packs[n].kind, 0) + b
        size = self.store.config.pack_size
        rep.packs_written = sum(max(1, round(b / size)) for b in by_kind.values())  # estimate
        rep.index_after = (1 if plan.keep or plan.repack else 0) if rewrite else len(old_index)
        removed = plan.condemned()
        rep.bytes_after = (rep.bytes_before - sum(listing[n].size for n in removed)
                           + rep.bytes_written)
        rep.bytes_freed = rep.bytes_before - rep.bytes_after
        rep.packs_after = len(listing) - len(removed) + rep.packs_written

    def _write(self, clean: Index, plan: _Plan, listing: dict[str, ObjectInfo],
               old_index: list[str], rewrite: bool, marker: Marker, live_sessions: set[str]
               ) -> tuple[str, list[PackInfo], list[str], Index]:
        """Repack (new packs durable first), the record and its waiting set, a second
        mark (what was committed or announced meanwhile un-condemns its packs), then
        the consolidated index. On a failure the packs and index objects this step
        wrote are removed again (no new garbage on a full disk).
        Returns (record, new packs, current index objects, surviving packs)."""
        rep = self.rep
        rp = self.mt.repacker()
        written: list[str] = []
        try:
            if plan.repack:
                self.obs.start("gc: repack",
                               total_bytes=sum(listing[n].size for n in plan.repack),
                               total_files=len(plan.repack), unit="packs")
                for name in plan.repack:
                    wanted = [e for e in clean.packs[name].entries
                              if clean.blobs[e.id].pack == name and e.id in self._live]
                    for blob in self.mt.read_live_blobs(name, wanted):
                        if rp.add(blob):
                            rep.blobs_repacked += 1
                    self.obs.progress(listing[name].size, 1)
                self.obs.finish()
            new_packs = rp.finish()
            rep.packs_written, rep.bytes_written = len(new_packs), rp.bytes_written
            crash_point("gc:after-repack")
            rname = ""
            condemned = set(plan.condemned())
            if condemned:
                rname = self._record(clean, plan, listing)
                copies = {e.id for p in new_packs for e in p.entries}
                doomed = set(condemned)

                def elsewhere(blob: bytes, pack: str) -> bool:
                    loc = clean.blobs.get(blob)
                    return blob in copies or (loc is not None and loc.pack != pack
                                              and loc.pack not in doomed)

                for name in sorted(condemned):
                    info = clean.packs.get(name)
                    if info is not None and any(e.id in marker.live
                                                and not elsewhere(e.id, name)
                                                for e in info.entries):
                        condemned.discard(name)  # used by a snapshot committed meanwhile
                        rep.packs_resurrected += 1
            survive = Index()
            for p in clean.iter_packs():
                if p.name not in condemned and p.name not in plan.dropped:
                    survive.add_pack(p)
            for p in new_packs:
                survive.add_pack(p)
            current = old_index
            if rewrite:
                current = self.mt.write_index_objects(list(survive.iter_packs()), old_index,
                                                      written)
                crash_point("gc:after-index")
            return rname, new_packs, current, survive
        except BaseException:
            for name in written:
                self.mt.delete_index(name)
            rp.abort()
            raise

    def _record(self, clean: Index, plan: _Plan, listing: dict[str, ObjectInfo]) -> str:
        packs = [clean.packs.get(n) or PackInfo(n, "data", listing[n].size, [])
                 for n in plan.condemned()]
        name = gr.write_record(self.store, packs, self.lock.id, self.clock.time())
        self.rep.packs_condemned += len(packs)
        crash_point("gc:after-record")
        others, _ = self._sessions()
        gr.write_sessions(self.store, name, others)
        # what was committed or announced since the first mark: its writers may not
        # have seen the record (their last look was before it was written)
        self.marker.intents(others.values())
        self.marker.snapshots_now()
        return name

    def _finish_record(self, rname: str, marker: Marker, survive: Index, full: Index,
                       listing: dict[str, ObjectInfo], keep: set[str]) -> None:
        """Phase 2 of the record this run wrote, if its sessions end within max_wait."""
        rec = next((r for r in gr.list_records(self.store) if r.name == rname), None)
        if rec is None or rec.sessions is None or not rec.packs:
            return  # an empty record is only the epoch for the next run
        deadline = self.clock.monotonic() + self.opts.max_wait
        while True:
            others, live = self._sessions()
            if not rec.sessions & live:
                break
            if self.clock.monotonic() >= deadline:
                self._report_wait(rec, others, live)
                return
            self.clock.sleep(POLL)
        for p in rec.packs.values():
            full.add_pack(p)
        marker.intents(others.values())
        marker.snapshots_now()
        self._phase2([rec], marker.live, survive, full, listing, keep)

    def _phase2(self, records: list[gr.Record], live: set[bytes], survive: Index,
                full: Index, listing: dict[str, ObjectInfo], keep: set[str]) -> None:
        """Resurrect the condemned packs still in use, delete the rest, then the records."""
        st, rep = self.store, self.rep
        back: list[PackInfo] = []
        doomed: list[str] = []
        named = self._named_by_others()
        for r in records:
            for name, p in r.packs.items():
                if (name in survive.packs or name in keep or name in named
                        or name not in listing):
                    continue
                info = full.packs.get(name, p)
                if any(e.id in live and e.id not in survive for e in info.entries):
                    back.append(info)
                    survive.add_pack(info)
                else:
                    doomed.append(name)
        if back:
            self.known_index.update(self.mt.write_index_objects(back, ()))
            rep.packs_resurrected += len(back)
        for name in doomed:
            self.mt.delete_pack(name)
            self._deleted.add(name)
            crash_point("gc:pack-delete")
        for r in records:
            gr.delete_record(st, r.name)
            rep.records_done += 1

    def _named_by_others(self) -> set[str]:
        """Packs named by index objects this run did not write or load (a writer's
        flush since): never deleted."""
        out: set[str] = set()
        for name in self.mt.index_names():
            if name in self.known_index:
                continue
            with contextlib.suppress(IntegrityError):
                out.update(p.name for p in self.store.read_index_object(name))
        return out

    def _report_wait(self, rec: gr.Record, others: dict[str, LockInfo],
                     live: set[str]) -> None:
        self._waiting.add(rec.name)
        for s in sorted((rec.sessions or frozenset()) & live):
            lk = others[s]
            self.rep.waiting.append(
                f"record {rec.name[:12]} ({len(rec.packs)} packs) waits for {lk.operation} "
                f"(pid {lk.pid} on {lk.hostname}, session {s[:8]})")
