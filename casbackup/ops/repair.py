"""repair: rebuild the index from pack headers, and take damaged packs out of the index.

``rebuild_index`` (``verify --repair-index``): every pack object on the backend is
indexed from its own header (two ranged reads per pack, no data); a pack whose header
is unreadable keeps the entries an old index object gave it, if one still reads. New
index objects (superseding every old one) are written first, then the old ones go.

``repair`` (``casbackup repair``): every indexed pack is read whole. A pack that is
missing, has the wrong size or does not hash to its name is *damaged*: each blob the
index places in it is unsealed and re-hashed; the good ones are copied into new packs,
the bad ones are dropped. Then, as in gc (DESIGN §9.4): new packs → consolidated index
without the damaged packs → delete old index objects → delete damaged packs. Blobs that
were lost are then in no index, so the next backup of a source that still has the data
uploads them again (the archiver re-reads a file whose blobs are not all indexed), and
every old snapshot that referenced them is whole again: BlobIds depend only on content.
Last, every snapshot object is read: one that is damaged (does not hash to its name,
unseal or decode; it cannot be restored and names no data anyone could read) is
deleted and reported. A snapshot that cannot be *fetched* (a backend error) is not
damaged: repair fails instead of deleting it.

Memory (issue #12): neither holds the whole index. ``repair`` reads the columnar view
(``store.blob_table``: mapped compact files) one pack's entries at a time, and writes the
new index from it as a stream; ``rebuild_index`` streams pack headers into the index
objects it writes and reads old index objects only for packs whose header does not read.

Invariants: both run under the **exclusive** lock; neither ever deletes a pack that an
index object still names, nor an index object before its replacement is durable; a
crash leaves a consistent store and a rerun finishes the job. Crash points:
``repair:after-index`` (both), ``gc:repack-pack`` (salvage copies).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain

from ..errors import CasError, IntegrityError
from ..faults import crash_point
from ..ids import DATA
from ..store import (
    BlobTable,
    PackEntry,
    PackInfo,
    Repacker,
    Store,
    blob_table,
    index_key,
    maintainer,
    pack_key,
)
from ..store.locks import exclusive_lock
from .capabilities import PackReader
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


def _replace_index(store: Store, packs: Iterable[PackInfo], old: list[str]) -> list[str]:
    """Write ``packs`` as the whole index, then delete the old index objects."""
    new = maintainer(store).write_index_objects(packs, old)
    crash_point("repair:after-index")
    for name in old:
        if name not in new:
            maintainer(store).delete_index(name)
    return new


def _load_old(store: Store, names: list[str], wanted: set[str],
              problems: list[str]) -> dict[str, PackInfo]:
    """The WANTED packs as the old index objects that still read name them (the first
    naming wins); only those are kept, one object's packs decoded at a time."""
    old: dict[str, PackInfo] = {}
    for name in names:
        try:
            packs, _ = store.index_object(name, cached=False)
        except CasError as e:
            problems.append(f"{index_key(name)}: {e}")
            continue
        for p in packs:
            if p.name in wanted:
                old.setdefault(p.name, p)
        del packs
    return old


def rebuild_index(store: Store, *, retry_lock: float = 0.0,
                  observer: Observer = NULL) -> RebuildReport:
    with exclusive_lock(store, "repair", retry=retry_lock):
        rep = _rebuild(store, observer)
    maintainer(store).reset_index()
    return rep


def _rebuild(store: Store, observer: Observer) -> RebuildReport:
    """Index every pack from its header, streaming: each pack's entries go into the
    index objects being written (``write_index_objects``: a batch at a time), so memory
    follows a batch, not the store. Packs whose header does not read come last, from
    the old index objects (read only for them)."""
    rep = RebuildReport()
    old_names = maintainer(store).index_names()
    rep.index_before = len(old_names)
    listing = maintainer(store).pack_listing()
    unreadable: dict[str, str] = {}  # pack -> why its header did not read

    def indexed(name: str, size: int, entries: list[PackEntry]) -> PackInfo | None:
        kinds = {e.kind for e in entries}
        if len(kinds) > 1:
            rep.problems.append(f"{pack_key(name)}: blobs of several kinds; not indexed")
            return None
        rep.packs += 1
        rep.blobs += len(entries)
        return PackInfo(name, kinds.pop() if kinds else DATA, size, entries)

    def from_headers() -> Iterator[PackInfo]:
        observer.start("repair: index", total_files=len(listing), unit="packs")
        for name in sorted(listing):
            try:
                entries = maintainer(store).read_pack_header(name, listing[name].size)
            except CasError as e:
                unreadable[name] = str(e)
                continue
            p = indexed(name, listing[name].size, entries)
            if p is not None:
                yield p
            observer.progress(0, 1)
        observer.finish()

    def from_old_index() -> Iterator[PackInfo]:
        old = _load_old(store, old_names, set(unreadable), rep.problems)
        for name in sorted(unreadable):
            known, size = old.pop(name, None), listing[name].size
            if known is None or known.size != size:
                rep.problems.append(f"{pack_key(name)}: {unreadable[name]}; not indexed")
                continue
            rep.from_old_index += 1
            p = indexed(name, size, known.entries)
            if p is not None:
                yield p

    rep.index_after = len(_replace_index(store, chain(from_headers(), from_old_index()),
                                         old_names))
    return rep


def repair(store: Store, *, retry_lock: float = 0.0, observer: Observer = NULL) -> RepairReport:
    with exclusive_lock(store, "repair", retry=retry_lock):
        rep = RepairReport()
        maintainer(store).reset_index()
        try:
            table = blob_table(store)
        except IntegrityError:
            rep.rebuilt = _rebuild(store, observer)
            maintainer(store).reset_index()
            table = blob_table(store)
        _salvage(store, table, rep, observer)
        _drop_damaged_snapshots(store, rep)
    maintainer(store).reset_index()
    return rep


def _drop_damaged_snapshots(store: Store, rep: RepairReport) -> None:
    for name in store.snapshot_ids():
        try:
            maintainer(store).load_snapshot_if_present(name)
        except IntegrityError as e:
            rep.damaged_snapshots[name] = str(e)
            store.delete_snapshot(name)


def _salvage(store: Store, table: BlobTable, rep: RepairReport, observer: Observer) -> None:
    """Read every indexed pack (not condemned by gc) whole, one at a time from the
    columnar view ``table`` (entries built for one pack at a time, none kept), rescue
    the damaged ones, then write the index without them."""
    old_names = list(store.index.objects)
    rep.index_before = rep.index_after = len(old_names)
    listing = maintainer(store).pack_listing()
    repacker = maintainer(store).repacker()
    damaged: list[str] = []
    keep = ~table.mask(store.excluded)  # condemned packs are not in the index (§8)
    observer.start("repair: read", total_bytes=int(table.pack_size[keep].sum()),
                   total_files=int(keep.sum()), unit="packs")
    for info in table.iter_packs(keep):
        name = info.name
        rep.packs_checked += 1
        on = listing.get(name)
        if (on is None or on.size != info.size
                or not _sound(store, name, info.entries, info.size)):
            damaged.append(name)
            _rescue(store, name, info.entries, on.size if on is not None else None,
                    repacker, rep)
        observer.progress(info.size, 1)
    observer.finish()
    new_packs = repacker.finish()
    rep.packs_written = len(new_packs)
    rep.damaged_packs = damaged
    if not damaged:
        return
    # a lost blob may have a good copy in another pack: then it is not lost
    keep &= ~table.mask(damaged)
    lost = sorted(rep.lost_blobs)
    elsewhere = table.resolve(lost, ~keep)
    rep.lost_blobs -= {b for b, pos in zip(lost, elsewhere.tolist(), strict=True) if pos >= 0}
    surviving = chain(table.iter_packs(keep), new_packs)
    rep.index_after = len(_replace_index(store, surviving, old_names))
    reborn = {p.name for p in new_packs}  # salvage may rebuild a pack byte for byte
    for name in damaged:
        if name not in reborn:
            maintainer(store).delete_pack(name)


def _sound(reader: PackReader, name: str, entries: list[PackEntry], size: int) -> bool:
    """Whether every byte of the pack reads and hashes to its name (no blob unsealed)."""
    stream = reader.stream_blobs(name, entries, whole=size, unseal=False)
    try:
        for _ in stream:
            pass
        return stream.finish().hash_ok
    except CasError:
        return False


def _rescue(reader: PackReader, name: str, entries: list[PackEntry], size: int | None,
            repacker: Repacker, rep: RepairReport) -> None:
    """Copy the blobs of damaged pack NAME that unseal and hash to their ids into new
    packs; the others are lost. A pack that is gone (SIZE None) or fails to read loses
    what was not read."""
    seen: set[bytes] = set()
    if size is not None:
        try:
            for blob in reader.stream_blobs(name, entries, size=size):
                seen.add(blob.entry.id)
                if blob.error is not None:
                    rep.lost_blobs.add(blob.entry.id)
                elif repacker.add(blob):
                    rep.blobs_salvaged += 1
        except CasError:
            pass  # the rest is lost
    rep.lost_blobs.update(e.id for e in entries if e.id not in seen)
