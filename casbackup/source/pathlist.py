"""``--files-from`` / ``--files-from-raw``: source paths listed in a file (``-``: stdin).

Invariants (restic's): ``--files-from`` is one path per line, surrounding white space
trimmed, empty lines and lines starting with ``#`` skipped; ``--files-from-raw`` is
NUL-separated and taken verbatim (empty items skipped). Bytes that are not UTF-8 keep
their value (``surrogateescape``), as paths on the command line do.
"""

from __future__ import annotations

import os
import sys

from ..errors import UsageError


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read file list {name}: {e.strerror}") from e


def read_paths(name: str, raw: bool = False) -> list[str]:
    data = _read(name)
    if raw:
        return [os.fsdecode(p) for p in data.split(b"\0") if p]
    out = []
    for line in data.splitlines():
        p = line.strip()
        if p and not p.startswith(b"#"):
            out.append(os.fsdecode(p))
    return out
