"""Store-side primitives for gc, forget and repair: listing, deleting, repacking and
writing consolidated index objects. Like the rest of ``store/``, the only code here that
calls Backend methods; ``ops/gc.py`` and ``ops/repair.py`` decide *what* to do, through
the ``Maintenance`` object ``Store.maintenance()`` gives them (ops declare the Protocol
they consume; nothing in ops imports this module).

Invariants:
- ``Repacker`` writes packs through its own ``Packer`` on a *fresh* ``Index``: blobs
  that the store's index already knows are written again (that is the point of a
  repack), each at most once per repacker. It never writes index objects itself; the
  caller lists ``Repacker.packs`` in the consolidated index (DESIGN §9.1: packs first).
- ``write_index_objects`` splits a large index into objects of at most ``MAX_BLOBS``
  entries; each names every superseded object. A superseding write encodes each pack
  as it comes (``IndexEncoder``): a batch is held as its bytes, not as entries. Old
  index objects are deleted only by the caller and only after this returned (§9.4).
- ``read_pack_header`` reads only the trailer and the header of a pack (two ranged
  reads), never its data; ``read_live_blobs`` reads only the ranges of wanted blobs,
  through the one pack reader (``Store.stream_blobs``).
- Memory of a repack is bounded by about three packs: one read range, the open pack,
  and the packs being uploaded (one on a local disk, up to four remote).
- Deleting a missing object is not an error: a rerun after a crash repeats deletes.
- Nothing here touches ``Store``'s private fields: it uses Store's methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..backends.base import ObjectInfo
from ..errors import AlreadyExists, IntegrityError, NotFound
from ..faults import crash_point
from ..ids import SNAPSHOT, object_name
from ..model.snapshot import Snapshot
from .consolidate import MAX_PER_RUN, MIN_OBJECTS, consolidate, small_objects
from .index import Index, IndexEncoder, PackColumns, PackInfo
from .layout import INDEX_DIR, LOCKS_DIR, PACKS_DIR, index_key, name_of, pack_key, snapshot_key
from .pack import PackEntry
from .packer import Packer
from .packread import BlobRead
from .store import Store

MAX_BLOBS = 200_000  # entries per consolidated index object (a few MiB each)


@dataclass(frozen=True, slots=True)
class LiveBlob:
    entry: PackEntry
    sealed: bytes | memoryview  # a view is valid only until the next blob is read


class Maintenance:
    """What gc and repair may do to a store beyond reading and backing up."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def index_names(self) -> list[str]:
        return list(dict.fromkeys(name_of(i.key) for i in self.store.backend.list(INDEX_DIR)))

    def pack_listing(self) -> dict[str, ObjectInfo]:
        """Every pack object on the backend, by name (a few dozen bytes per pack)."""
        return {name_of(i.key): i for i in self.store.backend.list(PACKS_DIR)}

    def lock_count(self) -> int:
        return sum(1 for _ in self.store.backend.list(LOCKS_DIR))

    def delete_pack(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self.store.backend.delete(pack_key(name))

    def delete_index(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self.store.backend.delete(index_key(name))

    def load_snapshot_if_present(self, name: str) -> Snapshot | None:
        """The snapshot, or None when it was deleted (by a concurrent ``forget``)
        meanwhile. Damage raises IntegrityError."""
        key = snapshot_key(name)
        try:
            data = self.store.backend.get(key)
        except NotFound:
            return None
        if object_name(data) != name:
            raise IntegrityError(f"object {key} does not hash to its name (damaged)")
        try:
            plain = self.store.codec.unseal(SNAPSHOT, data)
        except IntegrityError as e:
            raise IntegrityError(f"object {key}: {e}") from None
        return Snapshot.decode(plain, name)

    def write_index_objects(self, packs: Iterable[PackInfo | PackColumns],
                            supersedes: Iterable[str],
                            names: list[str] | None = None) -> list[str]:
        """Write ``packs`` as one or more index objects that each supersede
        ``supersedes``; return their names (also appended to ``names`` as each is
        written, so a caller can undo a partial write). Durable when this returns (puts
        are atomic and synced)."""
        sup = sorted(set(supersedes))
        names = [] if names is None else names
        if not sup:  # a plain write (resurrected packs): through the spill of write_index
            batch: list[PackInfo] = []
            count = 0
            for q in packs:
                p = q if isinstance(q, PackInfo) else q.to_info()
                if batch and count + len(p.entries) > MAX_BLOBS:
                    names.append(self.store.write_index(batch, sup))
                    batch, count = [], 0
                batch.append(p)
                count += len(p.entries)
            if batch:
                names.append(self.store.write_index(batch, sup))
            return names
        # a consolidation: each pack encoded as it comes (the same split and bytes), so
        # a batch of 200k entries is its encoding, not 200k PackEntry objects
        enc: IndexEncoder | None = None
        for c in packs:
            n = len(c.entries) if isinstance(c, PackInfo) else len(c)
            if enc is not None and enc.blobs + n > MAX_BLOBS:
                names.append(self.store.write_encoded_index(enc, enc.finish(sup)))
                enc = None
            if enc is None:
                enc = IndexEncoder()
            enc.add(c)
            del c
        if enc is not None:
            names.append(self.store.write_encoded_index(enc, enc.finish(sup)))
        return names

    def small_index_objects(self, among: Iterable[str]) -> list[str]:
        """The index objects of AMONG to merge when nothing else rewrites the index:
        those ``consolidate`` counts small, once there are more than its MIN_OBJECTS
        (the backups' rule), at most MAX_PER_RUN."""
        wanted = set(among)
        names = [n for n in small_objects(self.store) if n in wanted]
        return names[:MAX_PER_RUN] if len(names) > MIN_OBJECTS else []

    def merge_index_objects(self, names: list[str]) -> str | None:
        """One exact object naming every pack of NAMES, superseding them, which are then
        deleted (``consolidate.consolidate``; the caller holds a maintenance lock)."""
        return consolidate(self.store, names)

    def reset_index(self) -> None:
        """Forget the in-memory index, so the next ``load_index`` reads the objects now on
        the backend (after gc or repair replaced them)."""
        self.store.reset_index()

    def read_pack_header(self, name: str, size: int) -> list[PackEntry]:
        """A pack's entries from its trailer and sealed header alone; IntegrityError
        when they are damaged."""
        return self.store.read_pack_header(name, size)

    def read_live_blobs(self, name: str, wanted: Iterable[PackEntry]) -> Iterator[LiveBlob]:
        """The wanted blobs of pack ``name``, read by the one pack reader (a mostly-dead
        pack is not read whole) and each unsealed and re-hashed to its BlobId first: a
        damaged blob raises IntegrityError naming the pack (gc must not copy damage into
        a new pack). ``sealed`` is valid until the next blob: ``Repacker.add`` copies."""
        for blob in self.store.stream_blobs(name, wanted):
            if blob.error is not None:
                raise IntegrityError(
                    f"{pack_key(name)}: {blob.error}; run `casbackup repair`") from None
            yield LiveBlob(blob.entry, blob.sealed)

    def repacker(self) -> Repacker:
        return Repacker(self.store)


class Repacker:
    """Copies sealed blobs into new packs, bypassing the store's dedup check."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.packs: list[PackInfo] = []
        self.written: list[str] = []  # every pack this repacker put
        self.bytes_written = 0
        props = store.backend.properties()  # one upload at a time is enough on a local disk
        self._packer = Packer(
            store.codec, Index(), self._put_pack, self._collect, store.config.pack_size,
            uploaders=1 if props.is_local else max(1, min(4, props.connections)),
        )

    def _put_pack(self, name: str, data: bytes | memoryview) -> None:
        try:
            self.store.backend.put(pack_key(name), data, overwrite=False)
            self.written.append(name)
            self.bytes_written += len(data)
        except AlreadyExists:
            pass  # content-addressed: the same name holds the same bytes
        crash_point("gc:repack-pack")

    def _collect(self, packs: list[PackInfo]) -> None:
        self.packs.extend(packs)

    def add(self, blob: LiveBlob | BlobRead) -> bool:
        """Copy BLOB's sealed bytes into a new pack unless this repacker has it already."""
        e = blob.entry
        if not self._packer.reserve(e.id):
            return False
        self._packer.add(e.kind, e.id, blob.sealed, e.raw_length)
        return True

    def abort(self) -> None:
        """After a failure (no space left): stop, and delete the packs this repacker put
        (no index names them yet), so a failed gc leaves no garbage of its own."""
        with contextlib.suppress(Exception):
            self._packer.close()
        for name in self.written:
            with contextlib.suppress(Exception):
                self.store.backend.delete(pack_key(name))
        self.written = []

    def finish(self) -> list[PackInfo]:
        """Write the open packs and wait for every upload; the packs are durable then."""
        self._packer.flush()
        self._packer.close()
        return self.packs
