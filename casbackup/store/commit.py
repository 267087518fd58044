"""The writer side of two-phase gc: a ``WriteSession`` around every operation that
commits snapshots (backup, sync, each watch round) — DESIGN §8, writer rules W1-W4.

Invariants:
- Order: put the session lock -> read the gc records (the ones *seen* at start) -> leave
  the packs they condemn out of the index (no dedup against them) -> work (after each
  index object of the packer, if our lock may have looked stale since our last lock
  object: every pack it names must still be there, W1b) -> flush ->
  rewrite the lock with ``intent`` = the root tree -> list records again -> for every
  record not seen before (every record, if our lock may have looked stale: a gap of
  more than ``SELF_STALE`` between two of our lock objects) copy the blobs the snapshot
  uses whose only indexed copies are in condemned packs into new packs of ours, re-hashed
  -> repeat until no new record appeared -> put the snapshot -> release.
- If a condemned pack the snapshot needs is gone, or (after a possible stale period) a
  pack it uses or has just indexed is missing, nothing is committed: ``Locked`` (exit
  11), one line; an index object of ours naming a gone pack is replaced by one without
  (deleted first when the replacement cannot be written: never left naming it).
- A session ending by an error first waits for the packer's uploads in flight, so an
  index object they still write is checked (W1b) like every other.
- The check runs inside ``Store.save_snapshot`` (``Store.before_commit``), after the
  flush, so no caller can commit around it while a session is open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from types import TracebackType

from ..clock import SYSTEM, Clock
from ..errors import BackendError, IntegrityError, Locked
from ..model.snapshot import Snapshot
from ..model.tree import Tree
from ..model.treewalk import walk
from . import gcrecords as gr
from .identity import Identity
from .index import Index, Location, PackInfo
from .locks import SELF_STALE, Session, session
from .maintenance import Maintenance, Repacker
from .store import Store

GONE = ("gc removed data this {op} reused while it was paused; nothing was committed; "
        "run it again")


class WriteSession:
    """``with WriteSession(store, "backup") as ws: ... store.save_snapshot(snap)``"""

    def __init__(self, store: Store, operation: str, *, retry: float = 0.0,
                 clock: Clock = SYSTEM, me: Identity | None = None) -> None:
        self.store = store
        self.operation = operation
        self._cm = session(store, operation, retry=retry, clock=clock, me=me)
        self.lock: Session | None = None
        self.seen: set[str] = set()
        self.copied = 0  # blobs copied out of condemned packs (tests, reports)
        self._stale_handled = 0
        self._index_gaps = 0  # lock.stale_gaps when _check_packs last looked
        self._ours: list[tuple[list[PackInfo], str]] = []  # the packer's index objects

    def __enter__(self) -> WriteSession:
        self.lock = self._cm.__enter__()
        assert self.lock is not None  # a writer always holds a lock
        try:
            records = gr.list_records(self.store)
            self.seen = {r.name for r in records}
            self.store.exclude_packs(gr.condemned(records))
            self.store.before_commit = self._check
            self.store.after_index = self._check_packs
        except BaseException:
            self._cm.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if et is not None:  # an upload in flight still indexes its pack: check it (W1b)
                self.store.settle_uploads()
        finally:  # (a second Ctrl-C while waiting still releases the lock)
            self.store.before_commit = None
            self.store.after_index = None
            self._cm.__exit__(et, e, tb)

    def _check_packs(self, packs: list[PackInfo], index: str) -> None:
        """After the packer's index object INDEX named PACKS (stored, unindexed until
        then): if our lock may have looked stale since -- INDEX is more than SELF_STALE
        younger than our last lock object, or a heartbeat measured such a gap since the
        last check -- a gc elsewhere may have deleted them as unreferenced, so each must
        still be there; else INDEX is replaced by one naming only the packs still there
        and nothing is committed (an index object naming a gone pack would let a later
        backup deduplicate against it)."""
        lock = self.lock
        assert lock is not None
        self._ours.append((packs, index))
        mtime = self.store.index_mtime(index)
        gaps = lock.stale_gaps
        if gaps == self._index_gaps and mtime and lock.last_mtime and (
                mtime - lock.last_mtime <= SELF_STALE):
            return
        self._index_gaps = gaps
        gone = {p.name for p in packs if not self.store.pack_present(p.name)}
        if gone:
            self._drop_gone(gone)
            raise Locked(GONE.format(op=self.operation))

    def _drop_gone(self, gone: set[str]) -> None:
        """Replace each index object of ours naming a pack in GONE by one naming only
        the packs still there (another backup may already deduplicate against those), so
        no later backup deduplicates against a gone pack. When the replacement cannot be
        written (a full disk), the old object goes first and the replacement is tried
        again in the space that freed; if that fails too, the kept packs are left
        unindexed (garbage for gc), never named beside a gone one."""
        ours: list[tuple[list[PackInfo], str]] = []
        for packs, index in self._ours:
            if not any(p.name in gone for p in packs):
                ours.append((packs, index))
                continue
            kept = [p for p in packs if p.name not in gone]
            replaced: str | None = None
            if kept:
                # on failure, deleting INDEX first may free the space it needs
                with contextlib.suppress(BackendError):
                    replaced = self.store.write_index(kept)
            Maintenance(self.store).delete_index(index)
            if kept:
                if replaced is None:
                    replaced = self.store.write_index(kept)
                ours.append((kept, replaced))
        self._ours = ours

    def _check(self, snap: Snapshot) -> None:
        lock = self.lock
        assert lock is not None
        lock.set_intent(snap.tree)
        while True:
            full = lock.stale_gaps > self._stale_handled
            records = gr.list_records(self.store)
            new = [r for r in records if r.name not in self.seen]
            if not new and not full:
                return
            try:
                self._secure(snap.tree, records, full)
            except Locked:
                # whichever check found data gone (a tree unreadable, a blob unindexed, a
                # pack missing): no index object of ours may still name a gone pack
                present = Maintenance(self.store).pack_listing().keys()
                self._drop_gone({q.name for packs, _ in self._ours for q in packs
                                 if q.name not in present})
                raise
            self.seen |= {r.name for r in records}
            self._stale_handled = lock.stale_gaps
            lock.beat()  # measures the gap again: a pause during the copy is seen

    def _secure(self, root: bytes, records: list[gr.Record], full: bool) -> None:
        st = self.store
        prev = list(st.index.iter_packs())
        cond = gr.condemned(records)
        st.exclude_packs(cond)
        st.refresh_index()
        lookup = Index()
        for p in st.index.iter_packs():
            if p.name not in cond:
                lookup.add_pack(p)
        for r in records:
            for p in r.packs.values():
                lookup.add_pack(p)
        for p in prev:
            lookup.add_pack(p)
        needed, used = self._walk(root, lookup, cond)
        if full:
            present = Maintenance(st).pack_listing().keys()
            if any(p not in present for p in used - needed.keys()):
                raise Locked(GONE.format(op=self.operation))  # ``_check`` drops ours
        if needed:
            self._copy(needed)

    def _walk(self, root: bytes, lookup: Index, cond: set[str]
              ) -> tuple[dict[str, list[Location]], set[str]]:
        """(condemned pack -> the locations of blobs we need from it, packs we use): every
        tree and data blob below ROOT, each distinct tree read once (the one walker,
        ``model.treewalk.walk``), located in LOOKUP, which still lists condemned packs."""
        needed: dict[str, dict[bytes, Location]] = {}
        used: set[str] = set()

        def where(bid: bytes) -> Location:
            loc = lookup.get(bid)
            if loc is None:
                raise Locked(GONE.format(op=self.operation))
            used.add(loc.pack)
            if loc.pack in cond:
                needed.setdefault(loc.pack, {})[bid] = loc
            return loc

        def load(tid: bytes) -> Tree:
            loc = where(tid)
            try:
                raw = self.store.read_pack_range(loc.pack, loc.entry.offset, loc.entry.length)
            except IntegrityError:
                raise Locked(GONE.format(op=self.operation)) from None
            return Tree.decode(self.store.unseal_entry(loc.entry, raw))

        for e in walk(load, root, once=True):
            for b in e.node.content or ():
                where(b)
        return {p: list(m.values()) for p, m in needed.items()}, used

    def _copy(self, needed: dict[str, list[Location]]) -> None:
        st = self.store
        rp = Repacker(st)
        try:
            for pack, locs in needed.items():
                for blob in Maintenance(st).read_live_blobs(pack, [loc.entry for loc in locs]):
                    if rp.add(blob):
                        self.copied += 1
        except IntegrityError:
            rp.abort()
            raise Locked(GONE.format(op=self.operation)) from None
        packs = rp.finish()
        index_packs(st, packs)


def index_packs(store: Store, packs: Iterable[PackInfo]) -> None:
    """Write one index object for ``packs`` and add them to the loaded index."""
    packs = list(packs)
    if not packs:
        return
    store.write_index(packs)
    for p in packs:
        store.index.add_pack(p)
