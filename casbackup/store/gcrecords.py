"""Condemnation records of two-phase gc: ``gc/<id>`` and ``gc/<id>.sessions`` (DESIGN §8).

Invariants:
- ``gc/<id>`` (sealed, kind ``gc``, named by the BLAKE3 of its bytes) lists the packs a
  gc condemned, each with its index entries (empty for a pack no index named), so a
  writer can copy blobs out of them and a later gc can resurrect them. It is written
  after the consolidated index that no longer names them, before old index objects go.
  Its backend mtime is the record's *epoch*.
- ``gc/<id>.sessions`` (sealed, kind ``gc``) is the waiting set: the session ids in a
  lock listing made after the record was written. A record without it (gc killed in
  between) gets one from the next gc's listing, which names every session that was in
  the lost one and still runs.
- Deleting: the waiting set first, then the record, only after every condemned pack was
  deleted or re-indexed; a missing object is not an error (reruns repeat deletes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from .. import serde
from ..errors import IntegrityError, NotFound
from ..ids import GC_RECORD, object_name
from .index import IndexEncoder, PackColumns, PackInfo, decode_index
from .layout import GC_DIR, gc_key
from .store import Store

PREFIX = GC_DIR
SESSIONS = ".sessions"


@dataclass
class Record:
    name: str
    packs: dict[str, PackInfo]  # condemned pack name -> its entries (maybe none)
    mtime: float  # backend time it was written: the epoch
    gc_session: str
    sessions: frozenset[str] | None  # the waiting set (None: not written yet)


def write_record(store: Store, packs: Iterable[PackInfo | PackColumns], gc_session: str,
                 time: float) -> str:
    """Write the record condemning PACKS (an iterator may yield one pack at a time). The
    bytes are ``serde.pack({"index": encode_index(packs), "session": ..., "time": ...})``
    sealed, built in one buffer a pack at a time (``IndexEncoder``): no Python object
    per condemned blob, one plaintext copy (the object is content-named: sealed whole)."""
    room = 16  # the map's header, "index" and the bin header: at most 12 bytes
    enc = IndexEncoder(room)
    for p in packs:
        enc.add(p)
        del p  # a pack's columns or entries go before the next is read
    start = enc.finish()
    buf = enc.buf
    head = (serde.map_header(3) + serde.pack("index") + serde.bin_header(len(buf) - start))
    buf[start - len(head):start] = head
    buf += serde.pack("session") + serde.pack(gc_session) + serde.pack("time")
    buf += serde.pack(time)
    data = store.codec.seal(GC_RECORD, enc.view(start - len(head)))
    del buf, enc
    name = object_name(data)
    store.put_named(gc_key(name), data)
    return name


def write_sessions(store: Store, record: str, sessions: Iterable[str]) -> None:
    data = store.codec.seal(GC_RECORD, serde.pack({"record": record,
                                                   "sessions": sorted(sessions)}))
    store.backend.put(f"{PREFIX}{record}{SESSIONS}", data, overwrite=True)


def list_records(store: Store) -> list[Record]:
    """Every record now on the backend, oldest epoch first. A damaged record raises
    IntegrityError: writers and gc must not guess what it condemned."""
    infos = {i.key[len(PREFIX):]: i for i in store.backend.list(PREFIX)}
    out = []
    for name, info in infos.items():
        if name.endswith(SESSIONS):
            continue
        try:
            m = serde.unpack(store.read_object(PREFIX, name, GC_RECORD), "gc record")
        except IntegrityError as e:
            if "is missing" in str(e):
                continue  # deleted meanwhile: its phase 2 is over
            raise
        try:
            packs, _ = decode_index(bytes(m["index"]), name)
            sessions = _sessions(store, name) if name + SESSIONS in infos else None
            out.append(Record(name, {p.name: p for p in packs}, info.mtime,
                              str(m["session"]), sessions))
        except (KeyError, TypeError, ValueError) as e:
            raise IntegrityError(f"object {PREFIX}{name} is malformed: {e}") from None
    out.sort(key=lambda r: (r.mtime, r.name))
    return out


def record_names(store: Store) -> list[str]:
    """The names of the records on the backend now (a listing; nothing is read)."""
    return sorted({i.key[len(PREFIX):] for i in store.backend.list(PREFIX)
                   if not i.key.endswith(SESSIONS)})


def waiting_set(store: Store, name: str) -> tuple[bool, frozenset[str] | None]:
    """(whether record NAME is on the backend, its waiting set or None): what gc asks of
    the record it wrote, without decoding its condemned entries again."""
    keys = {i.key[len(PREFIX):] for i in store.backend.list(PREFIX)}
    if name not in keys:
        return False, None
    return True, (_sessions(store, name) if name + SESSIONS in keys else None)


def _sessions(store: Store, name: str) -> frozenset[str] | None:
    try:
        data = store.backend.get(f"{PREFIX}{name}{SESSIONS}")
    except NotFound:
        return None
    m = serde.unpack(store.codec.unseal(GC_RECORD, data), "gc waiting set")
    if str(m.get("record")) != name:
        raise IntegrityError(f"object {PREFIX}{name}{SESSIONS} names another record")
    return frozenset(str(s) for s in m["sessions"])


def delete_record(store: Store, name: str) -> None:
    for key in (f"{PREFIX}{name}{SESSIONS}", f"{PREFIX}{name}"):
        with contextlib.suppress(NotFound):
            store.backend.delete(key)


def condemned(records: Iterable[Record]) -> set[str]:
    return {p for r in records for p in r.packs}
