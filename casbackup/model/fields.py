"""Checks of decoded msgpack values, shared by the tree and snapshot validators.

Invariants: pure, no I/O. Every function returns ``None`` for a good value or a short
problem text (no Python reprs, no newlines) that the caller prefixes with the object it
found it in. ``bool`` is never accepted as an integer (msgpack keeps them apart; Python
does not). ``show`` renders untrusted bytes or text on one printable line.
"""

from __future__ import annotations

from typing import Any

U32 = 2**32 - 1
U64 = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (bytes, "a byte string"),
    (list, "a list"),
    (dict, "a map"),
    (type(None), "nil"),
)


def kind(v: Any) -> str:
    """What a decoded value is, in msgpack's words."""
    for t, name in _KINDS:
        if isinstance(v, t):
            return name
    return "an extension value"


def show(v: bytes | str, limit: int = 80) -> str:
    """One printable line for an untrusted name: control and undecodable bytes escaped."""
    text = v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v
    out = "".join(c if c.isprintable() else _escape(c) for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def check_int(field: str, v: Any, lo: int, hi: int) -> str | None:
    if type(v) is not int:
        return f"{field} is {kind(v)}, not an integer"
    if not lo <= v <= hi:
        return f"{field} {v} is out of range {lo}..{hi}"
    return None


def check_type(field: str, v: Any, t: type, name: str) -> str | None:
    if type(v) is not t:
        return f"{field} is {kind(v)}, not {name}"
    return None


def check_id(field: str, v: Any) -> str | None:
    """A 32-byte BlobId."""
    if type(v) is not bytes:
        return f"{field} is {kind(v)}, not a 32-byte id"
    if len(v) != 32:
        return f"{field} is {len(v)} bytes, not a 32-byte id"
    return None
