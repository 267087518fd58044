"""Tree and Node: a directory listing and its entries, with a canonical encoding.

Invariants:
- Names, symlink targets and xattr names/values are ``bytes`` and never decoded, so
  names that are not UTF-8 (or contain newlines) survive exactly.
- A tree's nodes are sorted by name (raw bytes) and names are unique within a tree.
- Encoding is canonical: fields are written in one fixed order and absent optional
  fields are omitted, so identical directories encode to identical bytes and an
  unchanged directory is one dedup hit.
- ``content`` (data BlobIds, in order) belongs to files, ``subtree`` to directories,
  ``target`` to symlinks, ``rdev`` to device nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import serde
from ..errors import IntegrityError

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
FIFO = "fifo"
CHARDEV = "chardev"
BLOCKDEV = "blockdev"
SOCKET = "socket"
TYPES = (FILE, DIR, SYMLINK, FIFO, CHARDEV, BLOCKDEV, SOCKET)

# The order in which fields are encoded; part of the format.
_FIELDS = (
    "name",
    "type",
    "mode",
    "uid",
    "gid",
    "user",
    "group",
    "mtime_ns",
    "ctime_ns",
    "inode",
    "device",
    "nlink",
    "size",
    "rdev",
    "content",
    "subtree",
    "target",
    "xattrs",
    "sparse",
)


@dataclass(slots=True)
class Node:
    name: bytes
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    user: str | None = None
    group: str | None = None
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0
    device: int = 0
    nlink: int = 1
    size: int = 0
    rdev: int | None = None
    content: list[bytes] | None = None
    subtree: bytes | None = None
    target: bytes | None = None
    xattrs: dict[bytes, bytes] | None = None
    sparse: bool = False

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in _FIELDS:
            v = getattr(self, f)
            if v is None or (f == "sparse" and not v):
                continue
            if f == "xattrs":
                if not v:
                    continue
                v = [[k, v[k]] for k in sorted(v)]
            out[f] = v
        return out

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Node:
        try:
            xa = m.get("xattrs")
            return cls(
                name=m["name"],
                type=m["type"],
                mode=m.get("mode", 0),
                uid=m.get("uid", 0),
                gid=m.get("gid", 0),
                user=m.get("user"),
                group=m.get("group"),
                mtime_ns=m.get("mtime_ns", 0),
                ctime_ns=m.get("ctime_ns", 0),
                inode=m.get("inode", 0),
                device=m.get("device", 0),
                nlink=m.get("nlink", 1),
                size=m.get("size", 0),
                rdev=m.get("rdev"),
                content=m.get("content"),
                subtree=m.get("subtree"),
                target=m.get("target"),
                xattrs={k: v for k, v in xa} if xa else None,
                sparse=bool(m.get("sparse", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise IntegrityError(f"tree node is malformed: {e}") from e


def encode_maps(maps: list[dict[str, Any]]) -> bytes:
    """Encode a tree from node maps already in canonical form (``Node.to_map`` output, or
    maps decoded from a stored tree); sorts by name like ``Tree.encode``."""
    maps.sort(key=lambda m: m["name"])  # type: ignore[no-any-return]
    return serde.pack({"nodes": maps})


def decode_maps(data: bytes) -> list[dict[str, Any]]:
    """The raw node maps of a tree blob (no Node objects: the backup's fast path)."""
    m = serde.unpack(data, "tree")
    if not isinstance(m, dict) or not isinstance(m.get("nodes"), list):
        raise IntegrityError("tree blob is not a map with a node list")
    return m["nodes"]  # type: ignore[no-any-return]


@dataclass(slots=True)
class Tree:
    nodes: list[Node] = field(default_factory=list)

    def encode(self) -> bytes:
        self.nodes.sort(key=lambda n: n.name)
        return serde.pack({"nodes": [n.to_map() for n in self.nodes]})

    @classmethod
    def decode(cls, data: bytes) -> Tree:
        m = serde.unpack(data, "tree")
        if not isinstance(m, dict) or not isinstance(m.get("nodes"), list):
            raise IntegrityError("tree blob is not a map with a node list")
        return cls([Node.from_map(n) for n in m["nodes"]])

    def find(self, name: bytes) -> Node | None:
        lo, hi = 0, len(self.nodes)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.nodes[mid].name < name:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.nodes) and self.nodes[lo].name == name:
            return self.nodes[lo]
        return None
