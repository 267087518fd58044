"""Human output's one escaping: a name from a store or a source never reaches a terminal raw.

A file name, host, tag, link target or owner can hold ESC sequences, OSC 52 clipboard
writes, ``\\r``, ``\\b``, BEL, a C1 CSI byte (0x9b) or a bidi override (U+202E); printed
as they are they rewrite the operator's terminal. ``escape`` is applied to every human
(non-``--json``) line on stdout at the writers (``common.echo``, the -v listing),
``escape_diagnostic`` to every line on stderr (``progress.notice``: warnings, retries,
notes; ``app``'s error line), so no caller can forget it;
``--json`` stays exact (JSON escapes by itself; ``shown`` only spells a byte that was not
UTF-8 as ``\\xNN``, docs/json.md).

Invariants:

- ``escape(s)`` is printable only (``str.isprintable()``: no C0/C1 control, DEL,
  surrogate, line or paragraph separator, format character such as U+202E).
- It is injective on names: ``\\`` becomes ``\\\\``, so every backslash in the output
  starts an escape. ``\\xNN`` is one *byte* of the name (as in a shell's ``$'…'``): a C0
  control or DEL is its byte, a C1 control (U+0080–U+009F) its two UTF-8 bytes
  (``\\xc2\\x9b``), and a byte that was not UTF-8 (``surrogateescape``'s U+DC80–U+DCFF)
  that raw byte. Any other non-printable character is ``\\uNNNN`` or ``\\UNNNNNNNN``.
- Printable text without a backslash is returned as it is (one C-speed check).
- Warnings and error lines (stderr) use ``escape_diagnostic``: the same escapes but a
  backslash kept, because the messages of ops/ and store/ already name paths through
  ``model.fields.show``; stdout's lines (listings, -v) use ``escape``.
"""

from __future__ import annotations


def escape(s: str) -> str:
    """``s`` with every non-printable character and backslash escaped (see module doc)."""
    if s.isprintable() and "\\" not in s:
        return s
    return "".join([_char(c) if not c.isprintable() or c == "\\" else c for c in s])


def escape_diagnostic(s: str) -> str:
    """``s`` (a warning or error line) with every non-printable character escaped as
    ``escape`` does, its backslashes left as they are: ops and the store already spell
    the names in their messages with ``model.fields.show`` (``\\xNN``), which a doubled
    backslash would misspell. Printable-only, not injective."""
    if s.isprintable():
        return s
    return "".join([c if c.isprintable() else _char(c) for c in s])


def _char(c: str) -> str:
    o = ord(c)
    if c == "\\":
        return "\\\\"
    if o < 0x80:  # C0 controls and DEL: the byte itself
        return f"\\x{o:02x}"
    if o < 0xA0:  # C1 controls: their UTF-8 bytes
        return "".join(f"\\x{b:02x}" for b in c.encode("utf-8"))
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode)
        return f"\\x{o - 0xDC00:02x}"
    return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


def shown(text: str) -> str:
    """``text`` for a JSON string: bytes that were not UTF-8 appear as \\xNN (docs/json.md;
    JSON escapes the rest itself, so nothing else is changed)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
