"""Check one index object as the store holds it, in bounded memory (verify, issue #12).

``check_index_object(store, name)`` reads ``index/<name>`` from the store (never a cache),
checks that it hashes to its name and unseals, then walks its msgpack with a streaming
unpacker, validating every pack and blob entry as ``index.decode_index_object`` would,
without building the list of entries: an object of a million entries costs its bytes
and a few small objects at a time, not a Python object per entry.

Invariants: reads only; raises ``IntegrityError`` for exactly the objects
``decode_index_object`` refuses (not a map, no ``packs``, a pack without ``id``/``kind``/
``size``/``blobs``, a blob that is not ``[32-byte id, int, int, int]``, bytes after the
value, and the pack and entry rules ``index.check_pack``/``check_entry`` state: a name
of 64 hex digits, a kind packs hold, every entry inside its pack); returns the number of
blob entries.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..errors import IntegrityError
from ..ids import INDEX
from .index import check_entry, check_pack
from .layout import INDEX_DIR
from .pack import blob_id
from .store import Store


def check_index_object(store: Store, name: str) -> int:
    return check_plain(store.read_object(INDEX_DIR, name, INDEX, cached=False), name)


def check_plain(data: bytes, name: str = "?") -> int:
    """The check of an unsealed index object's bytes; its number of blob entries."""
    what = f"index {name[:16]}"
    u = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    u.feed(data)
    del data
    try:
        n = _walk(u)
        try:
            u.unpack()
        except msgpack.OutOfData:
            return n
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


def _walk(u: Any) -> int:
    try:
        keys = u.read_map_header()
    except msgpack.UnpackValueError:
        raise _Malformed("not a map") from None
    n, packs = 0, False
    for _ in range(keys):
        key = u.unpack()
        if key == "packs":
            packs = True
            try:
                count = u.read_array_header()
            except msgpack.UnpackValueError:
                raise _Malformed("packs is not a list") from None
            for _ in range(count):
                n += _pack(u)
        else:
            u.skip()
    if not packs:
        raise _Malformed("'packs'")
    return n


def _pack(u: Any) -> int:
    try:
        keys = u.read_map_header()
    except msgpack.UnpackValueError:
        raise _Malformed("a pack is not a map") from None
    seen: dict[str, Any] = {}
    n = 0
    entries: list[tuple[int, int, int]] = []  # (offset, length, raw) of the widest ones
    for _ in range(keys):
        key = u.unpack()
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
            n += count
            seen["blobs"] = True
        else:
            seen[str(key)] = u.unpack()
    for k in ("id", "kind", "size", "blobs"):
        if k not in seen:
            raise _Malformed(repr(k))
    try:
        _, _, size = check_pack(seen["id"], seen["kind"], int(seen["size"]))
        for o, ln, r in entries:  # the entry reaching furthest must fit the pack
            check_entry(size, o, ln, r)
    except (TypeError, ValueError, OverflowError) as e:
        raise _Malformed(str(e)) from None
    return n
