"""Pack byte format: ``sealed blob 0 ‖ … ‖ sealed blob n ‖ sealed header ‖ u32 LE len ‖ magic``.

Invariants:
- A pack holds blobs of one kind only (data or tree).
- The sealed header lists ``[kind, id, offset, length, raw_length]`` for every blob, so
  the index can be rebuilt from packs alone (``verify --repair-index``).
- The pack's object name is the BLAKE3 of all its bytes, computed by the writer; a pack
  is immutable once written.
- The header and trailer are encoded only by ``encode_tail`` and read only through
  ``header_span`` (the trailer) and ``decode_header`` (the sealed header): a writer that
  holds the pack in memory (``finish_pack``), one that streams it (``packsink``) and a
  reader with the whole pack, its tail, or two ranged reads (``packread``) share them, so
  their checks cannot drift. Any bytes give entries or ``IntegrityError`` naming the pack.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .. import serde
from ..crypto.codec import Codec
from ..errors import IntegrityError
from ..ids import HEADER, object_name
from .layout import pack_key

MAGIC = b"CBP1"
TRAILER = struct.Struct("<I4s")  # the sealed header's length, then MAGIC

__all__ = ["MAGIC", "TRAILER", "PackEntry", "pack_key", "encode_tail", "finish_pack",
           "header_span", "decode_header", "parse_header", "blob_id"]


@dataclass(frozen=True, slots=True)
class PackEntry:
    """One blob inside a pack: also the value type of the index."""

    kind: str
    id: bytes
    offset: int
    length: int
    raw_length: int


def encode_tail(codec: Codec, entries: list[PackEntry]) -> bytes:
    """What follows a pack's blobs: the sealed header listing ``entries``, then the
    trailer."""
    header = serde.pack([[e.kind, e.id, e.offset, e.length, e.raw_length] for e in entries])
    sealed = codec.seal(HEADER, header)
    return sealed + TRAILER.pack(len(sealed), MAGIC)


def finish_pack(
    codec: Codec, buf: bytearray, entries: list[PackEntry]
) -> tuple[str, memoryview]:
    """Append the sealed header and trailer to ``buf`` (which holds the sealed blobs at the
    entries' offsets) in place, and return ``(name, bytes)`` without copying the blobs."""
    buf += encode_tail(codec, entries)
    return object_name(buf), memoryview(buf)


def blob_id(v: object) -> bytes:
    """``v`` if it is a 32-byte id (ValueError otherwise: ``bytes(n)`` of an int would be
    n zero bytes, a bogus id, or a MemoryError for a huge n)."""
    if type(v) is not bytes or len(v) != 32:
        raise ValueError("a blob id is not 32 bytes")
    return v


def _short(name: str) -> str:
    return f"pack {name[:16]}"


def header_span(trailer: bytes | memoryview, size: int, name: str = "?") -> tuple[int, int]:
    """``(start, length)`` of the sealed header of a pack of ``size`` bytes, from bytes
    ending at the pack's end (at least the trailer); IntegrityError when they are not a
    pack trailer or point outside the pack."""
    if size < TRAILER.size or len(trailer) < TRAILER.size:
        raise IntegrityError(f"{_short(name)} is truncated ({size} bytes)")
    hlen, magic = TRAILER.unpack_from(trailer, len(trailer) - TRAILER.size)
    if magic != MAGIC:
        raise IntegrityError(f"{_short(name)} has no pack trailer (truncated or not a pack)")
    start = size - TRAILER.size - hlen
    if start < 0:
        raise IntegrityError(f"{_short(name)} header length exceeds the pack")
    return start, hlen


def decode_header(codec: Codec, sealed: bytes | memoryview, start: int,
                  name: str = "?") -> list[PackEntry]:
    """The entries of the sealed header found at byte ``start`` of pack ``name``; every
    entry must lie before the header."""
    try:
        raw = codec.unseal(HEADER, sealed)
        rows = serde.unpack(raw, f"{_short(name)} header")
        entries = [PackEntry(str(k), blob_id(i), int(o), int(n), int(r))
                   for k, i, o, n, r in rows]
    except (IntegrityError, ValueError, TypeError, OverflowError) as err:
        raise IntegrityError(f"{_short(name)} header is damaged: {err}") from None
    for e in entries:
        if e.offset < 0 or e.length < 0 or e.offset + e.length > start:
            raise IntegrityError(f"{_short(name)} header points outside the pack")
    return entries


def parse_header(codec: Codec, pack: bytes | memoryview, name: str = "?") -> list[PackEntry]:
    """Entries of a whole pack; raises IntegrityError naming the pack when damaged."""
    start, hlen = header_span(pack, len(pack), name)
    return decode_header(codec, pack[start : start + hlen], start, name)
