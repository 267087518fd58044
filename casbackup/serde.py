"""The only user of msgpack: canonical encoding of every structured object.

Invariants:
- ``use_bin_type=True``: ``bytes`` stay bytes (file names, BlobIds), ``str`` stay str.
- ``raw=False`` with ``unicode_errors="strict"``: str fields must be valid UTF-8; names and
  symlink targets that may not be UTF-8 are stored as ``bytes`` by the model, never as str.
- Maps are encoded in the key order the caller gives; model/ builds maps in a fixed order
  so identical values encode to identical bytes (dedup of unchanged trees relies on it).
- ``strict_map_key=False`` so maps keyed by bytes decode.
- ``unpack`` of any byte string returns a value or raises ``IntegrityError``: never
  another exception (a map keyed by a list or map is refused too). Extension values
  (casbackup writes none) come back as msgpack's ``ExtType``/``Timestamp``: the model's
  validators refuse them by type.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import IntegrityError


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def array_header(n: int) -> bytes:
    """The header ``pack`` writes before a list of N items: a list's bytes are this
    header then each item's ``pack`` (msgpack is compositional), so a caller can encode
    a long list one item at a time, to the same bytes."""
    return _PACKER.pack_array_header(n)  # type: ignore[no-any-return]


def map_header(n: int) -> bytes:
    """The header ``pack`` writes before a map of N pairs (then key, value, ...)."""
    return _PACKER.pack_map_header(n)  # type: ignore[no-any-return]


def bin_header(n: int) -> bytes:
    """The header ``pack`` writes before a ``bytes`` value of N bytes (bin 8/16/32)."""
    if n < 1 << 8:
        return bytes((0xC4, n))
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    if n < 1 << 32:
        return b"\xc6" + n.to_bytes(4, "big")
    raise ValueError(f"{n} bytes is too long for msgpack")


_PACKER = msgpack.Packer(use_bin_type=True)


def unpack(data: bytes | memoryview, what: str = "object") -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except TypeError:  # an unhashable map key (a list or map)
        raise IntegrityError(f"{what} is not valid msgpack: a map key is a list or map") from None
    except ValueError as e:  # ExtraData, FormatError, StackError, UnicodeDecodeError...
        raise IntegrityError(f"{what} is not valid msgpack: {_reason(e)}") from None


def _reason(e: ValueError) -> str:
    if isinstance(e, msgpack.ExtraData):
        return "extra bytes after the value"
    if isinstance(e, msgpack.StackError):
        return "nested too deeply"
    if isinstance(e, UnicodeDecodeError):
        return "a string is not UTF-8"
    return str(e).splitlines()[0] if str(e) else "malformed"
