"""Snapshot: the small manifest that commits a backup.

Invariants: a snapshot names its root tree and (optionally) its parent; its own id is the
object name (BLAKE3 of the stored bytes) and is not a field. ``type`` is one of
``full | incremental | differential | snapshot``. ``original`` is set when the snapshot
was copied from another store by ``sync`` (the id there), so it is never copied twice.
Times are UTC seconds since the epoch (float, sub-second precision). ``paths`` are str;
a path that is not UTF-8 is held with ``surrogateescape`` (as ``os.fsdecode`` gives it) and
stored as msgpack bin (its raw bytes), every other path as msgpack str.

Decoding validates (``snapshot_problem``, design §7): every known field has its type
(``time`` a finite number within years 1970..9999, ``tree`` a 32-byte id, ``parent`` and
``original`` 64-hex snapshot ids or nil, ``type`` one of ``BACKUP_TYPES``, summary
figures non-negative numbers); unknown fields are ignored; anything else is an
``IntegrityError`` naming the snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import serde
from ..errors import IntegrityError
from ..ids import is_hex_id
from .fields import I64_MAX, check_id, check_int, kind

BACKUP_TYPES = ("full", "incremental", "differential", "snapshot")
SNAPSHOT_VERSION = 1
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: the last second datetime can show


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
        """A summary from a map ``summary_problem`` accepted (unknown keys ignored)."""
        s = cls()
        for k, v in m.items():
            if k in cls.__slots__:  # type: ignore[attr-defined]
                setattr(s, k, v)
        return s


def summary_problem(m: Any) -> str | None:
    if type(m) is not dict:
        return f"summary is {kind(m)}, not a map"
    for k, v in m.items():
        if k == "duration":
            if type(v) not in (int, float) or not 0 <= v < math.inf:
                return f"summary duration is {_number(v)}, not a non-negative number"
        elif k in Summary.__slots__:  # type: ignore[attr-defined]
            problem = check_int(f"summary {k}", v, 0, I64_MAX)
            if problem is not None:
                return problem
    return None


def _number(v: Any) -> str:
    return str(v) if type(v) in (int, float) else kind(v)


def _strings(field: str, v: Any, raw_ok: bool = False) -> str | None:
    """``raw_ok``: bytes entries are allowed too (paths that are not UTF-8)."""
    if type(v) is not list:
        return f"{field} is {kind(v)}, not a list of strings"
    for i, x in enumerate(v):
        if type(x) is not str and not (raw_ok and type(x) is bytes):
            return f"{field} entry {i} is {kind(x)}, not a string"
    return None


def _snapshot_id(field: str, v: Any) -> str | None:
    if v is None or (type(v) is str and is_hex_id(v)):
        return None
    return f"{field} is {kind(v) if type(v) is not str else 'a string'}, not a snapshot id"


def snapshot_problem(m: Any) -> str | None:
    """Why the decoded value ``m`` is not a valid snapshot map, or None if it is one."""
    if type(m) is not dict:
        return f"is {kind(m)}, not a map"
    if "version" not in m:
        return "has no version"
    if m["version"] != SNAPSHOT_VERSION or type(m["version"]) is not int:
        return f"has unknown version {_number(m['version'])}"
    for k in ("time", "hostname", "username", "paths", "tags", "type", "tree"):
        if k not in m:
            return f"has no {k}"
    t = m["time"]
    if type(t) not in (int, float) or not 0 <= t <= _MAX_TIME:
        return f"time is {_number(t)}, not seconds since 1970 before the year 10000"
    for k in ("hostname", "username", "type"):
        if type(m[k]) is not str:
            return f"{k} is {kind(m[k])}, not a string"
    if m["type"] not in BACKUP_TYPES:
        return "type is unknown (not one of " + ", ".join(BACKUP_TYPES) + ")"
    return (_strings("paths", m["paths"], raw_ok=True) or _strings("tags", m["tags"])
            or check_id("tree", m["tree"]) or _snapshot_id("parent", m.get("parent"))
            or _snapshot_id("original", m.get("original"))
            or ("summary" in m and m["summary"] is not None
                and summary_problem(m["summary"])) or None)


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
        m = serde.unpack(data, f"snapshot {id[:8]}")
        problem = snapshot_problem(m)
        if problem is not None:
            raise IntegrityError(f"snapshot {id[:8]} {problem}")
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
