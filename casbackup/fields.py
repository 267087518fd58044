"""Type checks for the fields of decoded msgpack maps (config, key objects).

Invariants: every check is total — it returns a bool for any Python value, never raises —
so a decoder can test untrusted fields first and raise its own ``IntegrityError``
naming the object. ``bool`` is never accepted as an integer.
"""

from __future__ import annotations

from typing import TypeGuard

HEX = frozenset("0123456789abcdef")


def is_int(v: object, lo: int, hi: int) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def is_bytes(v: object, size: int) -> TypeGuard[bytes]:
    return isinstance(v, bytes) and len(v) == size


def is_hex(v: object, digits: int) -> TypeGuard[str]:
    return isinstance(v, str) and len(v) == digits and all(c in HEX for c in v)
