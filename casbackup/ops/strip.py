"""``--strip-components N`` (borg's semantics), the one implementation restore, ls, dump
and find share.

Invariants: ``strip_components(path, 0)`` is PATH itself. For N > 0 the first N
components of PATH are dropped, keeping a leading ``/`` if PATH had one; a path with N
or fewer components has nothing left and gives ``None`` (the entry is left out, as borg
leaves it out silently). Empty components (``a//b``) are not components. A negative N is
refused (``check_strip``) before anything is read, and so are two entries that N puts at
one path (``check_unique``: ``/a/x`` and ``/b/x`` with N = 1): one would hide the other.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UsageError
from ..model.fields import show


def check_strip(n: int) -> None:
    """Refuse a negative ``--strip-components``."""
    if n < 0:
        raise UsageError("--strip-components must be 0 or more")


def strip_components(path: bytes, n: int) -> bytes | None:
    """PATH without its first N components, or None when that leaves nothing."""
    if n == 0:
        return path
    lead = b"/" if path.startswith(b"/") else b""
    parts = [p for p in path.split(b"/") if p]
    if len(parts) <= n:
        return None
    return lead + b"/".join(parts[n:])


def check_unique(paths: Iterable[bytes], n: int) -> None:
    """Refuse (``UsageError``) when stripping N components puts two of PATHS at one path."""
    seen: set[bytes] = set()
    for path in paths:
        kept = strip_components(path, n)
        if kept is None:
            continue
        if kept in seen:
            raise UsageError(f"--strip-components {n} puts two entries at {show(kept)}")
        seen.add(kept)
