"""The group a snapshot falls into under ``--group-by`` (``snapshots``, ``forget``).

Its own small module so that listing snapshots, which groups them, does not import the
retention policy (``retention``: six dataclasses and its rule tables built at import, on
the path of every ``snapshots`` and ``ls``). ``retention`` re-exports both names.

Invariant: a ``GroupKey`` is immutable and hashable (a dict key); a field is ``None``
when the snapshots are not grouped by it, so ``GroupKey()`` is the one group of all.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP_FIELDS = ("host", "paths", "tags")


@dataclass(frozen=True, slots=True)
class GroupKey:
    """The group a snapshot belongs to; a field is None when not grouped by it."""

    hostname: str | None = None
    paths: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
