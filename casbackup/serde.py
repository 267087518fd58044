"""The only user of msgpack: canonical encoding of every structured object.

Invariants:
- ``use_bin_type=True``: ``bytes`` stay bytes (file names, BlobIds), ``str`` stay str.
- ``raw=False`` with ``unicode_errors="strict"``: str fields must be valid UTF-8; names and
  symlink targets that may not be UTF-8 are stored as ``bytes`` by the model, never as str.
- Maps are encoded in the key order the caller gives; model/ builds maps in a fixed order
  so identical values encode to identical bytes (dedup of unchanged trees relies on it).
- ``strict_map_key=False`` so maps keyed by bytes decode.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import IntegrityError


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes | memoryview, what: str = "object") -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError,  # TypeError: a map keyed by a list ("unhashable")
            msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise IntegrityError(f"{what} is not valid msgpack: {e}") from e
