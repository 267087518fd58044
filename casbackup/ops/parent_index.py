"""Which ids a parent snapshot's tree names are not in the index: asked once per tree.

The archiver reuses a parent node (a file's content list, a directory's subtree) only
when every id it names is in the index (``repair`` may have dropped damaged blobs, a gc
may have condemned their pack: DESIGN §8 W1). Asked one id at a time, that is one index
lookup per unchanged file -- a quarter of an unchanged re-backup's main thread. So when
a parent tree is loaded, all the content and subtree ids its maps name go to the index
in one ``contains_many`` call, and the directory keeps the ids it did not find.

Invariants:
- ``missing_ids`` is the set of ids MAPS name that the index lacked when asked: the
  same answers as one ``in`` per id at that moment (``missing_ids_many``: for several
  trees, in one call; ``TreeAhead.checked_maps`` asks for the trees fetched ahead).
- ``all_indexed`` answers exactly what ``all(b in index for b in ids)`` answers later in
  the same backup: the index's exclusions are fixed from the session's start to its
  commit check (DESIGN §8 W1/W2) and it only gains entries meanwhile, so an id found
  then is still there; an id missing then may have been stored since (by this backup,
  or a writer beside it), so those are asked again, one by one.
- No I/O but the index's own lookups; nothing is cached across trees.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, Protocol

from ..model.tree import DIR, FILE

NONE_MISSING: frozenset[bytes] = frozenset()


class Membership(Protocol):
    def __contains__(self, blob_id: bytes, /) -> bool: ...

    def contains_many(self, blob_ids: list[bytes], /) -> list[bool]: ...


def _named(maps: Iterable[dict[str, Any]], ids: list[bytes]) -> None:
    for m in maps:
        t = m["type"]
        if t == FILE:
            content = m.get("content")
            if content:
                ids.extend(content)
        elif t == DIR:
            sub = m.get("subtree")
            if sub is not None:
                ids.append(sub)


def missing_ids(index: Membership, maps: Iterable[dict[str, Any]]) -> frozenset[bytes]:
    """The content blob ids and subtree ids named by MAPS that INDEX lacks now."""
    return missing_ids_many(index, [maps])[0]


def missing_ids_many(index: Membership, trees: list[Iterable[dict[str, Any]]],
                     ) -> list[frozenset[bytes]]:
    """``missing_ids`` of each of TREES (lists of maps), in one ``contains_many`` call
    for them all: a directory's ids lie in different blocks of the index's files, so
    one call per tree reads about as much as one lookup per id; many trees share them."""
    ids: list[bytes] = []
    ends: list[int] = []
    for maps in trees:
        _named(maps, ids)
        ends.append(len(ids))
    hits = index.contains_many(ids) if ids else []
    out: list[frozenset[bytes]] = []
    start = 0
    for end in ends:
        out.append(frozenset(ids[k] for k in range(start, end) if not hits[k])
                   or NONE_MISSING)
        start = end
    return out


def all_indexed(index: Membership, ids: Collection[bytes], missing: frozenset[bytes]) -> bool:
    """Is every id of IDS (named by a tree whose ``missing_ids`` were MISSING) in INDEX
    now? No lookup unless one of them was missing then."""
    if not missing or missing.isdisjoint(ids):
        return True
    return all(b in index for b in ids)
