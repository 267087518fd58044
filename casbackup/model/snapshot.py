"""Snapshot: the small manifest that commits a backup.

Invariants: a snapshot names its root tree and (optionally) its parent; its own id is the
object name (BLAKE3 of the stored bytes) and is not a field. ``type`` is one of
``full | incremental | differential | snapshot``. ``original`` is set when the snapshot
was copied from another store by ``sync`` (the id there), so it is never copied twice.
Times are UTC seconds since the epoch (float, sub-second precision). ``paths`` are str;
a path that is not UTF-8 is held with ``surrogateescape`` (as ``os.fsdecode`` gives it) and
stored as msgpack bin (its raw bytes), every other path as msgpack str.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import serde
from ..errors import IntegrityError

BACKUP_TYPES = ("full", "incremental", "differential", "snapshot")
SNAPSHOT_VERSION = 1


def _path_out(p: str) -> str | bytes:
    try:
        p.encode("utf-8")
        return p
    except UnicodeEncodeError:
        return p.encode("utf-8", "surrogateescape")


def _path_in(p: str | bytes) -> str:
    if isinstance(p, bytes):
        return p.decode("utf-8", "surrogateescape")
    if not isinstance(p, str):
        raise TypeError("a snapshot path is neither str nor bytes")
    return p


@dataclass(slots=True)
class Summary:
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    blobs_added: int = 0
    total_size: int = 0
    unreadable: int = 0
    changed_during_read: int = 0
    duration: float = 0.0

    def to_map(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Summary:
        s = cls()
        for k, v in m.items():
            if k in cls.__slots__:  # type: ignore[attr-defined]
                setattr(s, k, v)
        return s


@dataclass(slots=True)
class Snapshot:
    time: float
    hostname: str
    username: str
    paths: list[str]
    tree: bytes
    type: str = "incremental"
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    original: str | None = None
    summary: Summary = field(default_factory=Summary)
    id: str = ""  # filled in from the object name when loaded or saved; not encoded

    @property
    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.time, UTC)

    def encode(self) -> bytes:
        m: dict[str, Any] = {
            "version": SNAPSHOT_VERSION,
            "time": self.time,
            "hostname": self.hostname,
            "username": self.username,
            "paths": [_path_out(p) for p in self.paths],
            "tags": sorted(self.tags),
            "type": self.type,
            "parent": self.parent,
            "tree": self.tree,
            "original": self.original,
            "summary": self.summary.to_map(),
        }
        return serde.pack(m)

    @classmethod
    def decode(cls, data: bytes, id: str = "") -> Snapshot:
        m = serde.unpack(data, "snapshot")
        try:
            if m["version"] != SNAPSHOT_VERSION:
                raise IntegrityError(f"snapshot {id[:8]} has unknown version {m['version']}")
            return cls(
                time=float(m["time"]),
                hostname=m["hostname"],
                username=m["username"],
                paths=[_path_in(p) for p in m["paths"]],
                tree=m["tree"],
                type=m["type"],
                tags=list(m["tags"]),
                parent=m.get("parent"),
                original=m.get("original"),
                summary=Summary.from_map(m.get("summary") or {}),
                id=id,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise IntegrityError(f"snapshot {id[:8]} is malformed: {e}") from e

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "short_id": self.id[:8],
            "time": self.datetime.isoformat(),
            "hostname": self.hostname,
            "username": self.username,
            "paths": self.paths,
            "tags": self.tags,
            "type": self.type,
            "parent": self.parent,
            "original": self.original,
            "tree": self.tree.hex(),
            "summary": self.summary.to_map(),
        }
