"""Read one index object streaming, in bounded memory: verify's check and the compact
index build share this one decoder (issue #12).

``check_index_object(store, name)`` reads ``index/<name>`` from the store (never a cache),
checks that it hashes to its name and unseals, then walks its msgpack with a streaming
unpacker, validating every pack and blob entry as ``index.decode_index_object`` would,
without building the list of entries: an object of a million entries costs its bytes
and a few small objects at a time, not a Python object per entry. ``walk_plain(data,
name, sink)`` is the same walk handing every entry and pack to a ``Sink``
(``indexruns.py`` turns them into sorted runs of the compact index).

Invariants: reads only; raises ``IntegrityError`` for exactly the objects
``decode_index_object`` refuses (not a map, no ``packs``, a pack without ``id``/``kind``/
``size``/``blobs``, a blob that is not ``[32-byte id, int, int, int]``, bytes after the
value, ``supersedes`` not a list, and the pack and entry rules ``index.check_pack``/
``check_entry`` state: a name of 64 hex digits, a kind packs hold, every entry inside its
pack), and also for a map repeating a key (the decoder would keep the last; no writer
writes one); returns the number of blob entries. A sink sees a pack's entries first,
then ``pack(name, kind, size)`` once the pack has been checked whole: it keeps nothing of
a pack before that call, and nothing at all when the walk raises.
"""

from __future__ import annotations

import io
from typing import Any, Protocol

import msgpack

from ..errors import IntegrityError
from ..ids import INDEX
from .index import check_entry, check_pack
from .layout import INDEX_DIR
from .pack import blob_id


class _Reader(Protocol):  # a Store (not imported: store.py imports this module)
    def read_object(self, prefix: str, name: str, kind: str, *, cached: bool = True
                    ) -> bytes: ...

READ_SIZE = 1 << 20  # bytes the unpacker buffers at a time (not the object's size)


class Sink(Protocol):
    def entry(self, id_: bytes, offset: int, length: int, raw: int) -> None:
        """One checked blob entry of the pack being read."""

    def pack(self, name: str, kind: str, size: int) -> None:
        """The pack whose entries came since the last call, checked whole."""


class _Count:
    def entry(self, id_: bytes, offset: int, length: int, raw: int) -> None:
        pass

    def pack(self, name: str, kind: str, size: int) -> None:
        pass


def check_index_object(store: _Reader, name: str) -> int:
    return check_plain(store.read_object(INDEX_DIR, name, INDEX, cached=False), name)


def check_plain(data: bytes, name: str = "?") -> int:
    """The check of an unsealed index object's bytes; its number of blob entries."""
    return walk_plain(data, name, _Count())[0]


def walk_plain(data: bytes, name: str, sink: Sink) -> tuple[int, list[str], bool]:
    """Walk an unsealed index object's bytes, handing SINK its entries and packs;
    (entries, supersedes, exact) as ``decode_index_object`` reads them."""
    what = f"index {name[:16]}"
    cap = max(len(data), 1)  # no single value is bigger than the object
    u = msgpack.Unpacker(io.BytesIO(data), raw=False, strict_map_key=False,
                         read_size=min(READ_SIZE, cap), max_buffer_size=cap)
    del data
    try:
        got = _walk(u, sink)
        try:
            u.unpack()
        except msgpack.OutOfData:
            return got
        raise IntegrityError(f"{what} is not valid msgpack: extra bytes after the value")
    except msgpack.OutOfData:
        raise IntegrityError(f"{what} is not valid msgpack: truncated") from None
    except TypeError:
        raise IntegrityError(f"{what} is not valid msgpack: a map key is a list or map"
                             ) from None
    except ValueError as e:
        if isinstance(e, _Malformed):
            raise IntegrityError(f"{what} is malformed: {e}") from None
        raise IntegrityError(f"{what} is not valid msgpack: "
                             f"{str(e).splitlines()[0] if str(e) else 'malformed'}") from None


class _Malformed(ValueError):
    pass


def _key(u: Any, seen: set[Any]) -> Any:
    key = u.unpack()
    if key in seen:
        raise _Malformed(f"key {str(key)[:20]!r} repeated")
    seen.add(key)
    return key


def _walk(u: Any, sink: Sink) -> tuple[int, list[str], bool]:
    try:
        keys = u.read_map_header()
    except msgpack.UnpackValueError:
        raise _Malformed("not a map") from None
    n, packs = 0, False
    supersedes: list[str] = []
    exact = False
    seen: set[Any] = set()
    for _ in range(keys):
        key = _key(u, seen)
        if key == "packs":
            packs = True
            try:
                count = u.read_array_header()
            except msgpack.UnpackValueError:
                raise _Malformed("packs is not a list") from None
            for _ in range(count):
                n += _pack(u, sink)
        elif key == "supersedes":
            value = u.unpack()
            if type(value) is not list:
                raise _Malformed("supersedes is not a list")
            supersedes = [str(s) for s in value]
        elif key == "exact":
            exact = u.unpack() is True
        else:
            u.skip()
    if not packs:
        raise _Malformed("'packs'")
    return n, supersedes, exact


def _pack(u: Any, sink: Sink) -> int:
    try:
        keys = u.read_map_header()
    except msgpack.UnpackValueError:
        raise _Malformed("a pack is not a map") from None
    seen: dict[str, Any] = {}
    keys_seen: set[Any] = set()
    n = 0
    entries: list[tuple[int, int, int]] = []  # (offset, length, raw) of the widest ones
    for _ in range(keys):
        key = _key(u, keys_seen)
        if key == "blobs":
            try:
                count = u.read_array_header()
            except msgpack.UnpackValueError:
                raise _Malformed("blobs is not a list") from None
            for _ in range(count):
                entry = u.unpack()
                if type(entry) is not list or len(entry) != 4:
                    raise _Malformed("a blob entry is not [id, offset, length, raw_length]")
                i, o, ln, r = entry
                try:
                    blob_id(i)
                    o, ln, r = int(o), int(ln), int(r)
                    check_entry(2**63, o, ln, r)  # its bounds; the pack's size comes below
                except (TypeError, ValueError, OverflowError) as e:
                    raise _Malformed(str(e)) from None
                if not entries or o + ln > entries[0][0] + entries[0][1]:
                    entries[:] = [(o, ln, r)]
                sink.entry(i, o, ln, r)
            n += count
            seen["blobs"] = True
        else:
            seen[str(key)] = u.unpack()
    for k in ("id", "kind", "size", "blobs"):
        if k not in seen:
            raise _Malformed(repr(k))
    try:
        name, kind, size = check_pack(seen["id"], seen["kind"], int(seen["size"]))
        for o, ln, r in entries:  # the entry reaching furthest must fit the pack
            check_entry(size, o, ln, r)
    except (TypeError, ValueError, OverflowError) as e:
        raise _Malformed(str(e)) from None
    sink.pack(name, kind, size)
    return n
