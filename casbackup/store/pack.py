"""Pack byte format: ``sealed blob 0 ‖ … ‖ sealed blob n ‖ sealed header ‖ u32 LE len ‖ magic``.

Invariants:
- A pack holds blobs of one kind only (data or tree).
- The sealed header lists ``[kind, id, offset, length, raw_length]`` for every blob, so
  the index can be rebuilt from packs alone (``verify --repair-index``).
- The pack's object name is the BLAKE3 of all its bytes, computed by the writer; a pack
  is immutable once written.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .. import serde
from ..crypto.codec import HEADER, Codec
from ..errors import IntegrityError
from ..ids import object_name

MAGIC = b"CBP1"
_TAIL = struct.Struct("<I4s")


def pack_key(name: str) -> str:
    """The key of pack ``name``: fanned out by its first byte."""
    return f"packs/{name[:2]}/{name}"


@dataclass(frozen=True, slots=True)
class PackEntry:
    """One blob inside a pack: also the value type of the index."""

    kind: str
    id: bytes
    offset: int
    length: int
    raw_length: int


def finish_pack(
    codec: Codec, buf: bytearray, entries: list[PackEntry]
) -> tuple[str, memoryview]:
    """Append the sealed header and trailer to ``buf`` (which holds the sealed blobs at the
    entries' offsets) in place, and return ``(name, bytes)`` without copying the blobs."""
    header = serde.pack([[e.kind, e.id, e.offset, e.length, e.raw_length] for e in entries])
    sealed_header = codec.seal(HEADER, header)
    buf += sealed_header
    buf += _TAIL.pack(len(sealed_header), MAGIC)
    return object_name(buf), memoryview(buf)


def blob_id(v: object) -> bytes:
    """``v`` if it is a 32-byte id (ValueError otherwise: ``bytes(n)`` of an int would be
    n zero bytes, a bogus id, or a MemoryError for a huge n)."""
    if type(v) is not bytes or len(v) != 32:
        raise ValueError("a blob id is not 32 bytes")
    return v


def parse_header(codec: Codec, pack: bytes, name: str = "?", base: int = 0) -> list[PackEntry]:
    """Entries of a pack; raises IntegrityError naming the pack when damaged. ``pack`` is
    the whole pack, or (with ``base`` > 0) its suffix starting at byte ``base``."""
    if len(pack) < _TAIL.size:
        raise IntegrityError(f"pack {name[:16]} is truncated ({len(pack)} bytes)")
    hlen, magic = _TAIL.unpack_from(pack, len(pack) - _TAIL.size)
    if magic != MAGIC:
        raise IntegrityError(f"pack {name[:16]} has no pack trailer (truncated or not a pack)")
    start = len(pack) - _TAIL.size - hlen
    if start < 0:
        raise IntegrityError(f"pack {name[:16]} header length exceeds the pack")
    try:
        raw = codec.unseal(HEADER, pack[start : start + hlen])
        rows = serde.unpack(raw, f"pack {name[:16]} header")
        entries = [PackEntry(str(k), blob_id(i), int(o), int(n), int(r))
                   for k, i, o, n, r in rows]
    except (IntegrityError, ValueError, TypeError, OverflowError) as err:
        raise IntegrityError(f"pack {name[:16]} header is damaged: {err}") from None
    for e in entries:
        if e.offset < 0 or e.offset + e.length > base + start:
            raise IntegrityError(f"pack {name[:16]} header points outside the pack")
    return entries
