"""gc (alias prune): delete what no snapshot references, repack what is mostly garbage.

Steps, under the **exclusive** lock (no backup, restore or verify runs meanwhile):

1. *Load* every index object (their names are the "old" index objects) and list the
   pack objects on the backend.
2. *Mark*: walk every snapshot's trees, each distinct tree once, into a set of live
   BlobIds (the id objects are shared with the index, so the set costs a few dozen
   bytes per live blob). A damaged or unindexed tree, or a damaged snapshot, aborts gc
   before anything is written: gc must never guess what is referenced.
3. *Plan*, per indexed pack: a blob is live in the pack the index resolves it to; other
   copies are duplicates (garbage). A pack with no live blob is deleted; a pack whose
   unused share (dead bytes over pack size, header excluded) exceeds ``max_unused`` is
   repacked; others are kept. An indexed pack missing from the backend that still holds
   live blobs aborts gc ("run verify and repair"). Packs on the backend that no index
   names (crash leftovers) are deleted — see *Unindexed packs* below.
4. *Write*, then *delete*, in this order (DESIGN §5.4):
   a. repack: read each pack once, re-hash every live blob, copy its sealed bytes into
      new packs (a Packer on a fresh index, so the store's dedup check is bypassed);
      all new packs are durable before the next step;
   b. write the consolidated index (one or more objects) listing the kept and the new
      packs, each with ``supersedes`` = every old index object name;
   c. delete the old index objects;
   d. delete the packs that were emptied or repacked, then the unindexed packs.
   A crash anywhere leaves a consistent store: until (b) the old index objects name
   only existing packs and new packs are unindexed leftovers; between (b) and (c) old
   and new index objects coexist and name existing packs (duplicates are harmless);
   a pack is deleted only after every index object naming it is gone, so no index
   object ever names a deleted pack. A rerun of gc finishes the job.

*Unindexed packs.* A backup uploads packs before the index object naming them, so a
pack that no index names may belong to a backup still running. Under the exclusive
lock no backup that holds a live lock runs, so such packs are garbage — unless a lock
that is stale only by age (a stalled process on another host) or unreadable exists:
then only packs older than ``keep_unindexed_for`` are deleted. Locks of processes on
this host that are provably dead (crashed backups, a killed gc) do not count. gc also
re-lists ``index/`` just before deleting them and keeps them all if an index object it
did not write appeared.

Crash points (``CASBACKUP_TEST_CRASH_AT``): ``gc:repack-pack`` (after each new pack),
``gc:after-repack``, ``gc:after-index``, ``gc:index-delete`` (after each old index
object), ``gc:pack-delete`` (after each pack). ``dry_run`` plans and reports only.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from ..clock import SYSTEM, Clock
from ..errors import IntegrityError, UsageError
from ..faults import crash_point
from ..model.tree import Tree
from ..store import Store
from ..store import maintenance as mt
from ..store.index import Index
from ..store.locks import exclusive_lock, list_locks
from ..store.store import pack_key
from .observer import NULL, Observer

DEFAULT_MAX_UNUSED = 0.05
DEFAULT_KEEP_UNINDEXED = 3600.0


@dataclass
class GcOptions:
    max_unused: float = DEFAULT_MAX_UNUSED  # share of a pack, 0..1
    dry_run: bool = False
    keep_unindexed_for: float = DEFAULT_KEEP_UNINDEXED  # seconds
    retry_lock: float = 0.0  # seconds
    # dry run only: plan as if these snapshots were forgotten (forget --dry-run --prune)
    assume_forgotten: frozenset[str] = frozenset()


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
    blobs_repacked: int = 0
    orphans_deleted: int = 0
    orphans_kept: int = 0
    index_before: int = 0
    index_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    bytes_freed: int = 0
    bytes_written: int = 0
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


def header_bound(n: int) -> int:
    """An upper bound of a pack's sealed header + trailer for ``n`` blobs (each row is
    at most ~56 msgpack bytes; the seal adds a tag, a nonce and a MAC)."""
    return 96 + 64 * n


def gc(store: Store, opts: GcOptions | None = None, observer: Observer = NULL,
       clock: Clock = SYSTEM) -> GcReport:
    opts = opts or GcOptions()
    with exclusive_lock(store, "gc", retry=opts.retry_lock, clock=clock):
        return _gc(store, opts, observer, clock)


def mark(store: Store, index: Index, observer: Observer = NULL,
         skip: frozenset[str] = frozenset()) -> tuple[set[bytes], int, int, set[bytes]]:
    """(live BlobIds, snapshots, trees, referenced ids that no index knows), from every
    snapshot except those in ``skip``."""
    live: set[bytes] = set()
    trees: set[bytes] = set()
    missing: set[bytes] = set()
    snapshots = 0
    observer.start("gc: mark")
    for sid in store.snapshot_ids():
        if sid in skip:
            continue
        snap = mt.load_snapshot_if_present(store, sid)
        if snap is None:
            continue  # forgotten meanwhile: keeping more is safe
        snapshots += 1
        stack = [snap.tree]
        while stack:
            tid = stack.pop()
            if tid in trees:
                continue
            loc = index.get(tid)
            if loc is None:
                raise IntegrityError(f"tree {tid.hex()[:16]} of snapshot {sid[:8]} is in no "
                                     "index; gc cannot tell what is used: run `casbackup "
                                     "verify`, then `repair`")
            trees.add(loc.entry.id)
            live.add(loc.entry.id)
            try:
                tree = Tree.decode(store.get_blob(tid))
            except IntegrityError as e:
                raise IntegrityError(f"snapshot {sid[:8]}: {e}; gc stopped before changing "
                                     "anything: run `casbackup verify`") from None
            for node in tree.nodes:
                if node.subtree is not None:
                    stack.append(node.subtree)
                for b in node.content or ():
                    bl = index.get(b)
                    if bl is not None:
                        live.add(bl.entry.id)
                    else:
                        missing.add(b)
            observer.progress(0, 1)
    observer.finish()
    return live, snapshots, len(trees), missing


def _plan(store: Store, index: Index, listing: dict[str, Any], live: set[bytes],
          opts: GcOptions, rep: GcReport, clock: Clock) -> _Plan:
    plan = _Plan()
    missing_live: list[str] = []
    for name, info in index.packs.items():
        live_n = live_bytes = dead_bytes = 0
        for e in info.entries:
            loc = index.blobs.get(e.id)
            if e.id in live and loc is not None and loc.pack == name:
                live_n += 1
                live_bytes += e.length
            else:
                dead_bytes += e.length
        if name not in listing:
            if live_n:
                missing_live.append(f"{pack_key(name)} ({live_n} blobs in use)")
            else:
                plan.dropped.append(name)
            continue
        size = listing[name].size
        if live_n == 0:
            plan.delete.append(name)
        elif size - live_bytes - header_bound(live_n) > opts.max_unused * size:
            plan.repack.append(name)
            plan.live_bytes[name] = live_bytes + header_bound(live_n)
        else:
            plan.keep.append(name)
    if missing_live:
        raise IntegrityError(f"{len(missing_live)} pack(s) missing but still in use: "
                             f"{', '.join(missing_live[:3])}; gc stopped before changing "
                             "anything: run `casbackup verify` and `casbackup repair`")
    fresh_ok = not _others_may_write(store)
    now = clock.time()
    for name, info in listing.items():
        if name in index.packs:
            continue
        if fresh_ok or now - info.mtime >= opts.keep_unindexed_for:
            plan.orphans.append(name)
        else:
            rep.orphans_kept += 1
    if rep.orphans_kept:
        rep.warnings.append(
            f"kept {rep.orphans_kept} unindexed pack(s) younger than "
            f"{opts.keep_unindexed_for:.0f} s: a lock that may belong to a running "
            "operation exists (see `casbackup unlock`)")
    return plan


def _others_may_write(store: Store) -> bool:
    """True if a lock other than ours exists that is not provably dead (a process on
    this host that is not running), or a lock object cannot be read."""
    host, pid = socket.gethostname(), os.getpid()
    locks = list_locks(store)
    if len(locks) != mt.lock_count(store):
        return True  # an unreadable lock object: assume the worst
    for lk in locks:
        if lk.hostname == host and lk.pid == pid:
            continue  # ours (and our heartbeat's replacement)
        if lk.hostname != host:
            return True
        try:
            os.kill(lk.pid, 0)
            return True
        except ProcessLookupError:
            continue
        except PermissionError:
            return True
    return False


def _gc(store: Store, opts: GcOptions, observer: Observer, clock: Clock) -> GcReport:
    rep = GcReport(dry_run=opts.dry_run)
    if opts.assume_forgotten and not opts.dry_run:
        raise UsageError("assume_forgotten is only for a dry run")
    mt.reset_index(store)
    index = store.load_index()
    old_index = list(index.objects)
    listing = mt.pack_listing(store)
    rep.index_before = len(old_index)
    rep.packs_before = len(listing)
    rep.bytes_before = sum(i.size for i in listing.values())

    live, rep.snapshots, rep.trees, missing = mark(store, index, observer,
                                                   opts.assume_forgotten)
    rep.live_blobs, rep.missing_blobs = len(live), len(missing)
    if missing:
        rep.warnings.append(f"{len(missing)} referenced blob(s) are in no index (damaged "
                            "store: run `casbackup verify`)")
    plan = _plan(store, index, listing, live, opts, rep, clock)
    rep.packs_deleted, rep.packs_repacked = len(plan.delete), len(plan.repack)
    rep.packs_dropped = len(plan.dropped)
    removed = plan.delete + plan.repack + plan.orphans
    removed_bytes = sum(listing[n].size for n in removed)
    changed = bool(plan.delete or plan.repack or plan.dropped)
    rewrite = changed or len(old_index) > 1

    if opts.dry_run:
        rep.bytes_written = sum(plan.live_bytes.values())
        by_kind: dict[str, int] = {}
        for n, b in plan.live_bytes.items():
            by_kind[index.packs[n].kind] = by_kind.get(index.packs[n].kind, 0) + b
        size = store.config.pack_size
        rep.packs_written = sum(max(1, round(b / size)) for b in by_kind.values())  # estimate
        rep.orphans_deleted = len(plan.orphans)
        rep.index_after = (1 if plan.keep or plan.repack else 0) if rewrite else len(old_index)
        _finish(rep, removed_bytes, len(removed), listing)
        return rep

    # a. repack: new packs are durable before any index names them
    new_packs = []
    if plan.repack:
        rp = mt.Repacker(store)
        observer.start("gc: repack", total_bytes=sum(listing[n].size for n in plan.repack))
        for name in plan.repack:
            wanted = [e for e in index.packs[name].entries
                      if e.id in live and index.blobs[e.id].pack == name]
            for blob in mt.read_live_blobs(store, name, wanted):
                if rp.add(blob):
                    rep.blobs_repacked += 1
            observer.progress(listing[name].size)
        new_packs = rp.finish()
        observer.finish()
        rep.packs_written, rep.bytes_written = len(new_packs), rp.bytes_written
        crash_point("gc:after-repack")

    # b. consolidated index, then c. old index objects go
    current = old_index
    if rewrite:
        surviving = [index.packs[n] for n in plan.keep] + new_packs
        current = mt.write_index_objects(store, surviving, old_index)
        crash_point("gc:after-index")
        for name in old_index:
            if name not in current:
                mt.delete_index(store, name)
                crash_point("gc:index-delete")
    rep.index_after = len(current)

    # d. packs no index names any more
    for name in plan.delete + plan.repack:  # never a new pack: their content is live
        mt.delete_pack(store, name)
        crash_point("gc:pack-delete")
    # a repack may recreate, byte for byte, a pack that a killed gc left unindexed
    # (unencrypted stores seal deterministically): it is indexed now, not a leftover
    reborn = {p.name for p in new_packs}
    removed_bytes -= sum(listing[n].size for n in plan.orphans if n in reborn)
    plan.orphans = [n for n in plan.orphans if n not in reborn]
    if plan.orphans:
        appeared = set(mt.index_names(store)) - set(current)
        if appeared:
            rep.warnings.append(f"{len(appeared)} index object(s) appeared during gc; kept "
                                f"{len(plan.orphans)} unindexed pack(s): run gc again")
            removed_bytes -= sum(listing[n].size for n in plan.orphans)
            rep.orphans_kept += len(plan.orphans)
            plan.orphans = []
        for name in plan.orphans:
            mt.delete_pack(store, name)
            crash_point("gc:pack-delete")
    rep.orphans_deleted = len(plan.orphans)
    mt.reset_index(store)
    _finish(rep, removed_bytes, len(plan.delete + plan.repack + plan.orphans), listing)
    rep.packs_after -= len(reborn & listing.keys())  # in the listing and written again
    return rep


def _finish(rep: GcReport, removed_bytes: int, removed_packs: int,
            listing: dict[str, Any]) -> None:
    rep.bytes_after = rep.bytes_before - removed_bytes + max(0, rep.bytes_written)
    rep.bytes_freed = rep.bytes_before - rep.bytes_after
    rep.packs_after = len(listing) - removed_packs + max(0, rep.packs_written)
