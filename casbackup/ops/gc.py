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
   index object -- only when that set of packs changes (something condemned, dropped or
   resurrected, or an old object naming a condemned pack) or a record condemning packs
   is present (a gc killed before its deletes: this run finishes it); else the index
   objects stay
   and only small ones are merged, by the backups' rule (``store/consolidate.py``: an
   exact object, more than 64 small ones), so a gc with nothing to free writes no
   index; (c) a record ``gc/<id>`` condemning the dropped and repacked packs with
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

Memory (issue #12): gc holds no Python object per blob of the store. The index is the
read-only columnar view ``store.blob_table`` (mapped compact files); live blobs and
marked trees are bitmaps over its records, per-pack live bytes a vectorised sum
(``gc_sets``, ``gc_mark``, ``gc_plan``). The record and the consolidated index are
encoded from the table's columns 4096 rows at a time (``IndexEncoder``, ``PackColumns``:
held as their bytes, ~47 B a blob, never as entries; a pack of small blobs holds
~10^5), the resurrection checks read a pack's ids a chunk at a time, and only a
repacked pack's entries are built (one pack at a time, as it is read). The run's own
record is not decoded again for its phase 2: its entries are the view's.

Crash points (``CASBACKUP_TEST_CRASH_AT``): ``gc:repack-pack`` (after each new pack),
``gc:after-repack``, ``gc:after-index``, ``gc:after-record``, ``gc:index-delete`` (after
each old index object), ``gc:pack-delete`` (after each pack). ``dry_run`` plans and
reports only. On a failure (no space left) the packs this run wrote and no index names
are deleted before the error propagates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ..clock import SYSTEM, Clock
from ..errors import IntegrityError, PermanentError, UsageError
from ..faults import crash_point
from ..store import (
    CONSOLIDATE_OPERATION,
    ObjectInfo,
    PackColumns,
    PackEntry,
    PackInfo,
    Store,
    blob_table,
    maintainer,
)
from ..store import gcrecords as gr
from ..store.identity import Identity
from ..store.locks import LockInfo, Session, by_session, live_sessions, session
from .capabilities import Maintainer
from .gc_mark import Marker
from .gc_plan import Plan, header_bound, make_plan
from .gc_sets import BlobSets, Surviving
from .observer import NULL, Observer

__all__ = ["gc", "GcOptions", "GcReport", "Marker", "header_bound", "DEFAULT_MAX_UNUSED",
           "DEFAULT_KEEP_UNINDEXED", "DEFAULT_MAX_WAIT"]

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


def gc(store: Store, opts: GcOptions | None = None, observer: Observer = NULL,
       clock: Clock = SYSTEM, me: Identity | None = None) -> GcReport:
    opts = opts or GcOptions()
    # a backup's index consolidation is brief and bounded: wait for it (never exit 11
    # because a backup happened to be consolidating); another gc or repair: RETRY_LOCK
    with session(store, "gc", maintenance=True, retry=opts.retry_lock, clock=clock,
                 me=me, outwait=frozenset({CONSOLIDATE_OPERATION}), note=observer.note) as lock:
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


class _Gc:
    def __init__(self, store: Store, lock: Session, opts: GcOptions, observer: Observer,
                 clock: Clock) -> None:
        self.store, self.lock, self.opts, self.obs, self.clock = (
            store, lock, opts, observer, clock)
        self.mt: Maintainer = maintainer(store)
        self.rep = GcReport(dry_run=opts.dry_run)
        self._deleted: set[str] = set()
        self._waiting: set[str] = set()
        self.known_index: set[str] = set()
        self._mine: dict[str, PackInfo] = {}  # the packs this run's record condemns

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
        # the index before the pack listing: every pack it names is listed
        table = blob_table(st)
        old_index = list(st.index.objects)
        listing = self.mt.pack_listing()
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

        # full: indexed and condemned packs; clean: indexed, not condemned (gc_sets)
        sets = BlobSets(table, cond_all, [p for r in records for p in r.packs.values()])
        self.sets = sets
        self.obs.start("gc: mark", unit="trees")
        marker = Marker(st, sets, old_index, self.obs)
        marker.snapshots_now(opts.assume_forgotten)
        marker.intents(others.values())
        self.obs.finish()
        self.marker = marker
        keep = gr.condemned(pending)
        back = 0
        # condemned (by any record, ripe or not: a gc killed before its second mark left
        # one), but used after all: back into the consolidated index
        for r in records:
            for name, p in r.packs.items():
                if name not in listing or sets.clean_has_pack(name):
                    continue
                if any(live and not sets.in_clean(b)
                       for ids in sets.full_id_chunks(name, p)
                       for b, live in zip(ids, sets.live_flags(ids), strict=True)):
                    sets.clean_extra.add(sets.full_pack(name, p))
                    back += 1
        rep.packs_resurrected = back
        missing = {b for b in marker.missing if not sets.in_full(b)}
        rep.snapshots, rep.trees = marker.snapshots, sets.tree_count()
        rep.live_blobs, rep.missing_blobs = sets.live_count(), len(missing)
        if missing:
            rep.warnings.append(f"{len(missing)} referenced blob(s) are in no index "
                                "(damaged store: run `casbackup verify`)")
        epoch = max((r.mtime for r in ripe), default=0.0)
        plan = make_plan(sets, listing, cond_all, opts.max_unused,
                         fresh_ok=not live_sessions, epoch=epoch)
        rep.packs_deferred, rep.orphans_kept = plan.deferred, plan.orphans_kept
        if rep.orphans_kept or rep.packs_deferred:
            rep.warnings.append(
                f"kept {rep.orphans_kept + rep.packs_deferred} unused pack(s) that a "
                "running backup may still use: a later gc condemns them")
        rep.packs_deleted, rep.packs_repacked = len(plan.delete), len(plan.repack)
        rep.packs_dropped = len(plan.dropped)
        rep.orphans_deleted = len(plan.orphans)
        # the index is rewritten only when what it names changes; otherwise only small
        # objects are merged, by the backups' own rule (consolidate.py), so a gc with
        # nothing to free writes no index at all (it used to rewrite the whole index,
        # which is split into objects of 200k entries, on every run)
        # a record condemning packs (a gc before us, perhaps killed between its index
        # write and its deletes) means the index objects may still be the old ones
        # beside its consolidation: rewrite, so this run finishes that job
        rewrite = bool(plan.condemned() or plan.dropped or sets.cond.any() or back
                       or any(r.packs for r in records))
        small = [] if rewrite else self.mt.small_index_objects(old_index)
        if opts.dry_run:
            self._dry_run(plan, listing, old_index, rewrite, small)
            return rep

        # another gc (not provably dead: maybe only paused) may still write what it
        # planned, so this run deletes nothing while its lock exists
        maint = [lk for lk in others.values() if lk.maintenance and not lk.dead(self.lock.me)]
        rname, new_packs, current, survive = self._write(plan, listing, old_index, rewrite)
        if small:
            merged = self.mt.merge_index_objects(small)
            if merged is not None:
                current = [n for n in old_index if n not in small] + [merged]
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
            self._phase2(ripe, survive, listing, keep)
        for r in pending:
            self._report_wait(r, others, live_sessions)
        if rname and not maint:
            self._finish_record(rname, survive, listing, keep)
        if not gr.record_names(st):  # the epoch the next run's G2 measures packs by
            self._record(Plan(), listing)
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

    def _kind(self, name: str) -> str:
        no = self.sets.t.pack_no(name)
        if no is not None:
            return self.sets.t.kind(no)
        return self.sets.clean_extra.packs[name].kind

    def _size(self, name: str) -> int:
        """The size the index records for a pack of the clean view."""
        no = self.sets.t.pack_no(name)
        if no is not None:
            return int(self.sets.t.pack_size[no])
        return self.sets.clean_extra.packs[name].size

    def _dry_run(self, plan: Plan, listing: dict[str, ObjectInfo],
                 old_index: list[str], rewrite: bool, small: list[str]) -> None:
        rep = self.rep
        rep.bytes_written = sum(plan.live_bytes.values())
        by_kind: dict[str, int] = {}
        for n, b in plan.live_bytes.items():
            by_kind[self._kind(n)] = by_kind.get(self._kind(n), 0) + b
        size = self.store.config.pack_size
        rep.packs_written = sum(max(1, round(b / size)) for b in by_kind.values())  # estimate
        rep.index_after = ((1 if plan.keep or plan.repack else 0) if rewrite
                           else len(old_index) - len(small) + (1 if small else 0))
        removed = plan.condemned()
        rep.bytes_after = (rep.bytes_before - sum(listing[n].size for n in removed)
                           + rep.bytes_written)
        rep.bytes_freed = rep.bytes_before - rep.bytes_after
        rep.packs_after = len(listing) - len(removed) + rep.packs_written

    def _id_chunks(self, name: str) -> Iterator[list[bytes]] | None:
        """The ids of ``_pairs(name)``, in its order, a chunk at a time, without a
        ``PackEntry`` each; None for a pack no index names."""
        p = self.sets.clean_extra.packs.get(name)
        if p is not None:
            return iter([[e.id for e in p.entries]])
        if self.sets.t.pack_no(name) is None:
            return None
        return self.sets.full_id_chunks(name, PackInfo(name, "data", 0, []))

    def _pairs(self, name: str) -> list[tuple[int, PackEntry]] | None:
        """(position or -1, entry) of pack NAME of the clean view: an overlay's (position
        -1), else the table's (materialised now, this pack only); None for a pack no
        index names. One pack at a time: no Python object per condemned blob is held."""
        p = self.sets.clean_extra.packs.get(name)
        if p is not None:
            return [(-1, e) for e in p.entries]
        t = self.sets.t
        no = t.pack_no(name)
        return None if no is None else t.pack_pairs(no)

    def _write(self, plan: Plan, listing: dict[str, ObjectInfo], old_index: list[str],
               rewrite: bool) -> tuple[str, list[PackInfo], list[str], Surviving]:
        """Repack (new packs durable first), the record and its waiting set, a second
        mark (what was committed or announced meanwhile un-condemns its packs), then
        the consolidated index. On a failure the packs and index objects this step
        wrote are removed again (no new garbage on a full disk).
        Returns (record, new packs, current index objects, surviving packs)."""
        rep, sets = self.rep, self.sets
        rp = self.mt.repacker()
        written: list[str] = []
        condemned = set(plan.condemned())
        try:
            if plan.repack:
                self.obs.start("gc: repack",
                               total_bytes=sum(listing[n].size for n in plan.repack),
                               total_files=len(plan.repack), unit="packs")
                for name in plan.repack:
                    wanted = self._wanted(name, self._pairs(name) or [])
                    for blob in self.mt.read_live_blobs(name, wanted):
                        if rp.add(blob):
                            rep.blobs_repacked += 1
                    self.obs.progress(listing[name].size, 1)
                self.obs.finish()
            new_packs = rp.finish()
            rep.packs_written, rep.bytes_written = len(new_packs), rp.bytes_written
            crash_point("gc:after-repack")
            rname = ""
            if condemned:
                rname = self._record(plan, listing)
                copies = {e.id for p in new_packs for e in p.entries}
                doomed = set(condemned)

                def elsewhere(blob: bytes, pack: str) -> bool:
                    where = sets.clean_pack_of(blob)
                    return blob in copies or (where is not None and where != pack
                                              and where not in doomed)

                orphans = set(plan.orphans)
                for name in sorted(condemned):
                    chunks = None if name in orphans else self._id_chunks(name)
                    if chunks is None:
                        continue  # an orphan: no index named it
                    if any(live and not elsewhere(b, name) for ids in chunks
                           for b, live in zip(ids, sets.live_flags(ids), strict=True)):
                        condemned.discard(name)  # used by a snapshot committed meanwhile
                        rep.packs_resurrected += 1
            survive = Surviving(sets, condemned | set(plan.dropped))
            for p in new_packs:
                survive.add(p)
            current = old_index
            if rewrite:
                current = self.mt.write_index_objects(survive.packs(), old_index, written)
                crash_point("gc:after-index")
            return rname, new_packs, current, survive
        except BaseException:
            for name in written:
                self.mt.delete_index(name)
            rp.abort()
            raise

    def _wanted(self, name: str, pairs: list[tuple[int, PackEntry]]) -> list[PackEntry]:
        """The entries of clean pack NAME that are live and resolve to it."""
        sets = self.sets
        out = []
        for pos, e in pairs:
            if pos >= 0:
                if sets.live[pos]:  # bits sit at the clean position of an id: here
                    out.append(e)
            elif sets.is_live(e.id) and sets.clean_pack_of(e.id) == name:
                out.append(e)
        return out

    def _record(self, plan: Plan, listing: dict[str, ObjectInfo]) -> str:
        orphans = set(plan.orphans)
        names = plan.condemned()

        def packs() -> Iterator[PackInfo | PackColumns]:  # one pack at a time
            t = self.sets.t
            for n in names:
                extra = self.sets.clean_extra.packs.get(n)
                no = t.pack_no(n)
                if n in orphans or (extra is None and no is None):
                    yield PackInfo(n, "data", listing[n].size, [])
                elif extra is not None:
                    yield PackInfo(n, self._kind(n), self._size(n), extra.entries)
                else:  # the table's rows as columns: no object per condemned blob
                    assert no is not None
                    yield t.pack_columns(no)

        self._mine = {n: PackInfo(n, self._kind(n) if n not in orphans else "data",
                                  self._size(n) if n not in orphans else listing[n].size, [])
                      for n in names}
        name = gr.write_record(self.store, packs(), self.lock.id, self.clock.time())
        self.rep.packs_condemned += len(names)
        crash_point("gc:after-record")
        others, _ = self._sessions()
        gr.write_sessions(self.store, name, others)
        # what was committed or announced since the first mark: its writers may not
        # have seen the record (their last look was before it was written)
        self.marker.intents(others.values())
        self.marker.snapshots_now()
        return name

    def _finish_record(self, rname: str, survive: Surviving,
                       listing: dict[str, ObjectInfo], keep: set[str]) -> None:
        """Phase 2 of the record this run wrote, if its sessions end within max_wait."""
        # what this run wrote, not read back: the condemned entries are the view's (the
        # table's or its overlays', as ``full_pack`` finds them), so decoding the record
        # again would only hold a Python object per freed blob
        there, sessions = gr.waiting_set(self.store, rname)
        if not there or sessions is None or not self._mine:
            return  # an empty record is only the epoch for the next run
        rec = gr.Record(rname, self._mine, 0.0, self.lock.id, sessions)
        deadline = self.clock.monotonic() + self.opts.max_wait
        while True:
            others, live = self._sessions()
            if not sessions & live:
                break
            if self.clock.monotonic() >= deadline:
                self._report_wait(rec, others, live)
                return
            self.clock.sleep(POLL)
        self.marker.intents(others.values())
        self.marker.snapshots_now()
        self._phase2([rec], survive, listing, keep)

    def _phase2(self, records: list[gr.Record], survive: Surviving,
                listing: dict[str, ObjectInfo], keep: set[str]) -> None:
        """Resurrect the condemned packs still in use, delete the rest, then the records."""
        st, rep, sets = self.store, self.rep, self.sets
        back: list[PackInfo] = []
        doomed: list[str] = []
        named = self._named_by_others()
        for r in records:
            for name, p in r.packs.items():
                if (survive.has_pack(name) or name in keep or name in named
                        or name not in listing):
                    continue
                if any(live and not survive.has_blob(b)
                       for ids in sets.full_id_chunks(name, p)
                       for b, live in zip(ids, sets.live_flags(ids), strict=True)):
                    info = sets.full_pack(name, p)
                    back.append(info)
                    survive.add(info)
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
