"""repair: rebuild the index from pack headers, and take damaged packs out of the index.

``rebuild_index`` (``verify --repair-index``): every pack object on the backend is
indexed from its own header (two ranged reads per pack, no data); a pack whose header
is unreadable keeps the entries an old index object gave it, if one still reads. New
index objects (superseding every old one) are written first, then the old ones go.

``repair`` (``casbackup repair``): every indexed pack is read whole. A pack that is
missing, has the wrong size or does not hash to its name is *damaged*: each blob the
index places in it is unsealed and re-hashed; the good ones are copied into new packs,
the bad ones are dropped. Then, as in gc (DESIGN §5.4): new packs → consolidated index
without the damaged packs → delete old index objects → delete damaged packs. Blobs that
were lost are then in no index, so the next backup of a source that still has the data
uploads them again (the archiver re-reads a file whose blobs are not all indexed), and
every old snapshot that referenced them is whole again: BlobIds depend only on content.
Last, every snapshot object is read: one that is damaged (does not hash to its name,
unseal or decode; it cannot be restored and names no data anyone could read) is
deleted and reported. A snapshot that cannot be *fetched* (a backend error) is not
damaged: repair fails instead of deleting it.

Invariants: both run under the **exclusive** lock; neither ever deletes a pack that an
index object still names, nor an index object before its replacement is durable; a
crash leaves a consistent store and a rerun finishes the job. Crash points:
``repair:after-index`` (both), ``gc:repack-pack`` (salvage copies).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crypto.codec import INDEX
from ..errors import CasError, IntegrityError
from ..faults import crash_point
from ..ids import object_name
from ..store import Store
from ..store import maintenance as mt
from ..store.index import Index, PackInfo, decode_index
from ..store.locks import exclusive_lock
from ..store.pack import PackEntry
from ..store.store import pack_key
from .observer import NULL, Observer


@dataclass
class RebuildReport:
    packs: int = 0
    blobs: int = 0
    from_old_index: int = 0  # packs whose header was unreadable, indexed from an old object
    index_before: int = 0
    index_after: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class RepairReport:
    rebuilt: RebuildReport | None = None  # when an index object was unreadable
    packs_checked: int = 0
    damaged_packs: list[str] = field(default_factory=list)
    blobs_salvaged: int = 0
    lost_blobs: set[bytes] = field(default_factory=set)
    packs_written: int = 0
    index_before: int = 0
    index_after: int = 0
    damaged_snapshots: dict[str, str] = field(default_factory=dict)  # removed: name -> why

    @property
    def changed(self) -> bool:
        return bool(self.damaged_packs or self.rebuilt or self.damaged_snapshots)


def _replace_index(store: Store, packs: list[PackInfo], old: list[str]) -> list[str]:
    """Write ``packs`` as the whole index, then delete the old index objects."""
    new = mt.write_index_objects(store, packs, old)
    crash_point("repair:after-index")
    for name in old:
        if name not in new:
            mt.delete_index(store, name)
    return new


def _load_old(store: Store, names: list[str], problems: list[str]) -> Index:
    old = Index()
    for name in names:
        try:
            packs, _ = decode_index(store.read_object("index/", name, INDEX, cached=False),
                                    name)
        except CasError as e:
            problems.append(f"index/{name}: {e}")
            continue
        old.add_object(name, packs)
    return old


def rebuild_index(store: Store, *, retry_lock: float = 0.0,
                  observer: Observer = NULL) -> RebuildReport:
    with exclusive_lock(store, "repair", retry=retry_lock):
        rep = _rebuild(store, observer)
    mt.reset_index(store)
    return rep


def _rebuild(store: Store, observer: Observer) -> RebuildReport:
    rep = RebuildReport()
    old_names = mt.index_names(store)
    rep.index_before = len(old_names)
    old = _load_old(store, old_names, rep.problems)
    listing = mt.pack_listing(store)
    packs: list[PackInfo] = []
    observer.start("repair: index", total_files=len(listing))
    for name in sorted(listing):
        size = listing[name].size
        try:
            entries = mt.read_pack_header(store, name, size)
        except CasError as e:
            known = old.packs.get(name)
            if known is None or known.size != size:
                rep.problems.append(f"{pack_key(name)}: {e}; not indexed")
                continue
            rep.from_old_index += 1
            entries = known.entries
        kinds = {e.kind for e in entries}
        if len(kinds) > 1:
            rep.problems.append(f"{pack_key(name)}: blobs of several kinds; not indexed")
            continue
        kind = kinds.pop() if kinds else "data"
        packs.append(PackInfo(name, kind, size, entries))
        rep.blobs += len(entries)
        observer.progress(0, 1)
    observer.finish()
    rep.packs = len(packs)
    rep.index_after = len(_replace_index(store, packs, old_names))
    return rep


def repair(store: Store, *, retry_lock: float = 0.0, observer: Observer = NULL) -> RepairReport:
    with exclusive_lock(store, "repair", retry=retry_lock):
        rep = RepairReport()
        mt.reset_index(store)
        try:
            store.load_index()
        except IntegrityError:
            rep.rebuilt = _rebuild(store, observer)
            mt.reset_index(store)
            store.load_index()
        _salvage(store, rep, observer)
        _drop_damaged_snapshots(store, rep)
    mt.reset_index(store)
    return rep


def _drop_damaged_snapshots(store: Store, rep: RepairReport) -> None:
    for name in store.snapshot_ids():
        try:
            mt.load_snapshot_if_present(store, name)
        except IntegrityError as e:
            rep.damaged_snapshots[name] = str(e)
            store.delete_snapshot(name)


def _salvage(store: Store, rep: RepairReport, observer: Observer) -> None:
    index = store.index
    old_names = list(index.objects)
    rep.index_before = rep.index_after = len(old_names)
    listing = mt.pack_listing(store)
    repacker = mt.Repacker(store)
    damaged: list[str] = []
    observer.start("repair: read", total_bytes=sum(p.size for p in index.packs.values()))
    for name, info in sorted(index.packs.items()):
        rep.packs_checked += 1
        on = listing.get(name)
        data = None
        if on is not None:
            try:
                data = store.read_pack(name)
            except CasError:
                data = None
        if data is not None and len(data) == info.size and object_name(data) == name:
            observer.progress(info.size)
            continue
        damaged.append(name)
        for e in info.entries:
            good = data is not None and _good(store, e, data)
            if good and data is not None and repacker.add(
                    mt.LiveBlob(e, data[e.offset:e.offset + e.length])):
                rep.blobs_salvaged += 1
            elif not good:
                rep.lost_blobs.add(e.id)
        observer.progress(info.size)
    observer.finish()
    new_packs = repacker.finish()
    rep.packs_written = len(new_packs)
    rep.damaged_packs = damaged
    if not damaged:
        return
    # a lost blob may have a good copy in another pack: then it is not lost
    bad = set(damaged)
    elsewhere = {e.id for n, p in index.packs.items() if n not in bad
                 for e in p.entries if e.id in rep.lost_blobs}
    rep.lost_blobs -= elsewhere
    surviving = [p for n, p in index.packs.items() if n not in damaged] + new_packs
    rep.index_after = len(_replace_index(store, surviving, old_names))
    reborn = {p.name for p in new_packs}  # salvage may rebuild a pack byte for byte
    for name in damaged:
        if name not in reborn:
            mt.delete_pack(store, name)


def _good(store: Store, e: PackEntry, data: bytes) -> bool:
    if e.offset + e.length > len(data):
        return False
    try:
        store.unseal_entry(e, data[e.offset:e.offset + e.length])
        return True
    except IntegrityError:
        return False
