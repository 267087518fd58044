"""The index: BlobId -> where the blob lives, in memory and as ``index/<id>`` objects.

Invariants:
- An index object names only packs that were completely written before it (§9.1).
- Index objects are immutable; gc writes a consolidated one listing the index objects it
  ``supersedes`` and deletes those only after the new one is durable.
- When a blob appears in several packs (two writers raced, or a crash left a duplicate)
  the first entry loaded wins; any of them is a correct copy.
- Encoded as sealed msgpack ``{"packs": [{"id", "kind", "size", "blobs": [[id, offset,
  length, raw_length], …]}], "supersedes": [names]}``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import serde
from ..errors import IntegrityError
from .pack import PackEntry, blob_id


@dataclass(slots=True)
class PackInfo:
    name: str
    kind: str
    size: int
    entries: list[PackEntry]


@dataclass(slots=True)
class Location:
    pack: str
    entry: PackEntry


def encode_index(packs: Iterable[PackInfo], supersedes: Iterable[str] = ()) -> bytes:
    return serde.pack(
        {
            "packs": [
                {
                    "id": p.name,
                    "kind": p.kind,
                    "size": p.size,
                    "blobs": [[e.id, e.offset, e.length, e.raw_length] for e in p.entries],
                }
                for p in packs
            ],
            "supersedes": list(supersedes),
        }
    )


def decode_index(data: bytes, name: str = "?") -> tuple[list[PackInfo], list[str]]:
    m = serde.unpack(data, f"index {name[:16]}")
    try:
        packs = []
        for p in m["packs"]:
            kind = str(p["kind"])
            entries = [
                PackEntry(kind, blob_id(i), int(o), int(n), int(r)) for i, o, n, r in p["blobs"]
            ]
            packs.append(PackInfo(str(p["id"]), kind, int(p["size"]), entries))
        return packs, [str(s) for s in m.get("supersedes", [])]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise IntegrityError(f"index {name[:16]} is malformed: {e}") from None



@dataclass
class Index:
    """The merged in-memory index. Thread-safe for concurrent lookups and adds."""

    blobs: dict[bytes, Location] = field(default_factory=dict)
    packs: dict[str, PackInfo] = field(default_factory=dict)
    # index object name -> the pack names it lists
    objects: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_pack(self, pack: PackInfo) -> None:
        with self._lock:
            if pack.name in self.packs:
                return
            self.packs[pack.name] = pack
            for e in pack.entries:
                if e.id not in self.blobs:
                    self.blobs[e.id] = Location(pack.name, e)

    def add_object(self, name: str, packs: list[PackInfo]) -> None:
        for p in packs:
            self.add_pack(p)
        self.objects[name] = [p.name for p in packs]

    def replace_with(self, other: Index) -> None:
        """Take ``other``'s contents (a full reload), keeping this object's identity."""
        with self._lock:
            self.blobs, self.packs, self.objects = other.blobs, other.packs, other.objects

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self.blobs

    def get(self, blob_id: bytes) -> Location | None:
        return self.blobs.get(blob_id)

    def lookup(self, blob_id: bytes) -> Location:
        loc = self.blobs.get(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index")
        return loc

    def __len__(self) -> int:
        return len(self.blobs)

    def iter_packs(self) -> Iterator[PackInfo]:
        return iter(list(self.packs.values()))

    def stats(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for p in self.packs.values():
            by_kind[p.kind] = by_kind.get(p.kind, 0) + 1
        return {
            "blobs": len(self.blobs),
            "packs": len(self.packs),
            "packs_by_kind": by_kind,
            "index_objects": len(self.objects),
        }
