"""Store-side primitives for gc, forget and repair: listing, deleting, repacking and
writing consolidated index objects. Like the rest of ``store/``, the only code here that
calls Backend methods; ``ops/gc.py`` and ``ops/repair.py`` decide *what* to do.

Invariants:
- ``Repacker`` writes packs through its own ``Packer`` on a *fresh* ``Index``: blobs
  that the store's index already knows are written again (that is the point of a
  repack), each at most once per repacker. It never writes index objects itself; the
  caller lists ``Repacker.packs`` in the consolidated index (DESIGN §5.1: packs first).
- ``write_index_objects`` splits a large index into objects of at most ``MAX_BLOBS``
  entries; each names every superseded object. Old index objects are deleted only by
  the caller and only after this returned (DESIGN §5.4).
- ``read_pack_header`` reads only the trailer and the header of a pack (two ranged
  reads), never its data; ``read_live_blobs`` reads only the ranges of wanted blobs.
- Memory of a repack is bounded by about three packs: one read range, the open pack,
  and the packs being uploaded (one on a local disk, up to four remote).
- Deleting a missing object is not an error: a rerun after a crash repeats deletes.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .. import serde
from ..backends.base import ObjectInfo
from ..crypto.codec import HEADER, SNAPSHOT
from ..errors import AlreadyExists, IntegrityError, NotFound
from ..faults import crash_point
from ..ids import object_name
from ..model.snapshot import Snapshot
from .index import Index, PackInfo, StoreIndex
from .pack import MAGIC, PackEntry
from .packer import Packer
from .store import Store, pack_key

MAX_BLOBS = 200_000  # entries per consolidated index object (a few MiB each)
GAP = 256 * 1024  # read across gaps smaller than this rather than issuing two reads
_TAIL = struct.Struct("<I4s")


def name_of(info: ObjectInfo) -> str:
    return info.key.rsplit("/", 1)[1]


def index_names(store: Store) -> list[str]:
    return [name_of(i) for i in store.backend.list("index/")]


def pack_listing(store: Store) -> dict[str, ObjectInfo]:
    """Every pack object on the backend, by name (a few dozen bytes per pack)."""
    return {name_of(i): i for i in store.backend.list("packs/")}


def lock_count(store: Store) -> int:
    return sum(1 for _ in store.backend.list("locks/"))


def delete_pack(store: Store, name: str) -> None:
    with contextlib.suppress(NotFound):
        store.backend.delete(pack_key(name))


def delete_index(store: Store, name: str) -> None:
    with contextlib.suppress(NotFound):
        store.backend.delete(f"index/{name}")


def load_snapshot_if_present(store: Store, name: str) -> Snapshot | None:
    """The snapshot, or None when it was deleted (by a concurrent ``forget``) meanwhile.
    Damage raises IntegrityError."""
    try:
        data = store.backend.get(f"snapshots/{name}")
    except NotFound:
        return None
    if object_name(data) != name:
        raise IntegrityError(f"object snapshots/{name} does not hash to its name (damaged)")
    return Snapshot.decode(store.codec.unseal(SNAPSHOT, data), name)


def write_index_objects(store: Store, packs: Iterable[PackInfo],
                        supersedes: Iterable[str], names: list[str] | None = None
                        ) -> list[str]:
    """Write ``packs`` as one or more index objects that each supersede ``supersedes``;
    return their names (also appended to ``names`` as each is written, so a caller can
    undo a partial write). Durable when this returns (puts are atomic and synced)."""
    sup = sorted(set(supersedes))
    names = [] if names is None else names
    batch: list[PackInfo] = []
    count = 0
    for p in packs:
        if batch and count + len(p.entries) > MAX_BLOBS:
            names.append(store._write_index(batch, sup))
            batch, count = [], 0
        batch.append(p)
        count += len(p.entries)
    if batch:
        names.append(store._write_index(batch, sup))
    return names


def reset_index(store: Store) -> None:
    """Forget the in-memory index, so the next ``load_index`` reads the objects now on
    the backend (after gc or repair replaced them)."""
    if store._packer is not None:
        store._packer.flush()
        store._packer.close()
        store._packer = None
    store.index = StoreIndex()
    store._index_loaded = False
    with store._cache_lock:
        store._tree_cache.clear()


def read_pack_header(store: Store, name: str, size: int) -> list[PackEntry]:
    """A pack's entries from its trailer and sealed header alone; IntegrityError when
    they are damaged."""
    key = pack_key(name)
    if size < _TAIL.size:
        raise IntegrityError(f"pack {name[:16]} is truncated ({size} bytes)")
    hlen, magic = _TAIL.unpack(store.read_pack_range(name, size - _TAIL.size, _TAIL.size))
    if magic != MAGIC:
        raise IntegrityError(f"pack {name[:16]} has no pack trailer (truncated or not a pack)")
    start = size - _TAIL.size - hlen
    if start < 0:
        raise IntegrityError(f"pack {name[:16]} header length exceeds the pack")
    try:
        raw = store.codec.unseal(HEADER, store.read_pack_range(name, start, hlen))
        rows = serde.unpack(raw, f"pack {name[:16]} header")
        entries = [PackEntry(str(k), bytes(i), int(o), int(n), int(r)) for k, i, o, n, r in rows]
    except (IntegrityError, ValueError, TypeError) as err:
        raise IntegrityError(f"{key}: header is damaged: {err}") from err
    for e in entries:
        if e.offset < 0 or e.offset + e.length > start:
            raise IntegrityError(f"{key}: header points outside the pack")
    return entries


@dataclass(frozen=True, slots=True)
class LiveBlob:
    entry: PackEntry
    sealed: bytes


def read_live_blobs(store: Store, name: str, wanted: Iterable[PackEntry]) -> Iterator[LiveBlob]:
    """Read the wanted blobs of pack ``name`` (ranges closer than ``GAP`` are merged into
    one read, so a mostly-dead pack is not read whole) and yield them, each unsealed and
    re-hashed to its BlobId first: a damaged blob raises IntegrityError naming the pack
    (gc must not copy damage into a new pack)."""
    entries = sorted(wanted, key=lambda e: e.offset)
    i = 0
    while i < len(entries):
        j = i + 1
        while j < len(entries) and entries[j].offset - (
                entries[j - 1].offset + entries[j - 1].length) < GAP:
            j += 1
        start = entries[i].offset
        end = entries[j - 1].offset + entries[j - 1].length
        data = memoryview(store.read_pack_range(name, start, end - start))
        for e in entries[i:j]:
            sealed = bytes(data[e.offset - start:e.offset - start + e.length])
            if len(sealed) != e.length:
                raise IntegrityError(f"{pack_key(name)}: blob {e.id.hex()[:16]} is truncated")
            try:
                store.unseal_entry(e, sealed)
            except IntegrityError as err:
                raise IntegrityError(f"{pack_key(name)}: {err}; run `casbackup repair`") from None
            yield LiveBlob(e, sealed)
        i = j


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

    def add(self, blob: LiveBlob) -> bool:
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
