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
- Decoding validates: ``scan_tree`` is the one reader of a tree blob's plaintext, and
  ``Tree.decode`` / ``decode_maps`` / ``Node.from_map`` return only nodes it accepted
  (``node_problem``: design §7's rules), else raise ``IntegrityError`` naming the tree id
  and the node. So no shape of stored data reaches restore, ls or gc unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter, lt
from typing import Any

from .. import serde
from ..errors import IntegrityError
from .fields import I64_MAX, I64_MIN, U32, U64, check_id, check_int, check_type, kind, show

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
    def from_map(cls, m: Any, tree_id: bytes | None = None) -> Node:
        """A node from a decoded map, validated like every node of a tree blob."""
        problem = node_problem(m)
        if problem is not None:
            raise IntegrityError(f"{_where(tree_id)}node {_label(m, 0)}: {problem}")
        return cls._of(m)

    @classmethod
    def _of(cls, m: dict[str, Any]) -> Node:
        """A node from a map ``node_problem`` accepted (no further checks)."""
        if m.keys() <= _PLAIN_KEYS:  # only fields stored as they are held (no xattrs)
            return cls(**m)
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
            sparse=m.get("sparse", False),
        )


# ----- validation: the one reader of untrusted node maps ------------------------------
#
# Every node map that comes out of a tree blob passes ``node_problem`` before anything
# uses it (backup's parent maps, restore, verify, ls, gc...). The rules (design §7):
# names are non-empty bytes without NUL or '/', not '.' or '..', strictly sorted in a
# tree; integers are in the range their field can hold; each type carries only its own
# fields, and a directory its subtree, a symlink its target. Fields this version does not
# know are ignored (a newer writer may add some); known fields must be well formed.

_TYPES = frozenset(TYPES)
_PLAIN_KEYS = frozenset(_FIELDS) - {"xattrs"}  # Node(**m) holds these as stored
_U32, _U64, _I64 = (0, U32), (0, U64), (I64_MIN, I64_MAX)  # times before 1970 are < 0
_Check = Callable[[str, Any, str], "str | None"]  # (field, value, node type) -> problem


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be an entry of a directory, or None if it can."""
    if type(name) is not bytes:
        return f"name is {kind(name)}, not a byte string"
    if not name:
        return "name is empty"
    if name in (b".", b".."):
        return f"name is {name.decode()}"
    if b"/" in name or b"\0" in name:
        return "name contains " + ("'/'" if b"/" in name else "a NUL byte")
    return None


def node_problem(m: Any) -> str | None:
    """Why the decoded value ``m`` is not a valid node map, or None if it is one."""
    if type(m) is dict and _plainly_valid(m):
        return None
    return _explain(m)


_ABSENT: Any = object()
_INT_FIELDS = (("mode", 0, 0o7777), ("uid", 0, U32), ("gid", 0, U32),
               ("mtime_ns", I64_MIN, I64_MAX), ("ctime_ns", I64_MIN, I64_MAX),
               ("inode", 0, U64), ("device", 0, U64), ("nlink", 0, U64), ("size", 0, I64_MAX),
               ("rdev", 0, U64))
# the fields each type must not have (beyond those it may: see _SPEC's _only)
_FOREIGN = {FILE: ("subtree", "target", "rdev"), DIR: ("content", "target", "rdev"),
            SYMLINK: ("content", "subtree", "rdev"), FIFO: ("content", "subtree", "target", "rdev"),
            SOCKET: ("content", "subtree", "target", "rdev"),
            CHARDEV: ("content", "subtree", "target"), BLOCKDEV: ("content", "subtree", "target")}


# per known field, how the fast path checks it: an int range, or a kind tag
_FAST: dict[str, tuple[int, int] | str] = {f: (lo, hi) for f, lo, hi in _INT_FIELDS}
_FAST.update(user="str", group="str", sparse="bool", content="content", subtree="id",
             target="target", xattrs="xattrs")


def _plainly_valid(m: dict[Any, Any]) -> bool:
    """The fast path (a tree of 20k nodes is checked on every backup): True only for a
    node ``_explain`` accepts too; False sends the node to ``_explain`` for the verdict
    and its words. (tests/unit/model/test_validate.py checks that the two agree.)
    One pass over the map's own fields: an absent field is valid by its default."""
    name, t = m.get("name"), m.get("type")
    if (type(name) is not bytes or not name or b"/" in name or b"\0" in name
            or name == b"." or name == b".." or type(t) is not str):
        return False
    foreign = _FOREIGN.get(t)
    if foreign is None:
        return False
    for f in foreign:
        if f in m:
            return False
    for k, v in m.items():
        spec = _FAST.get(k)
        if spec is None:
            continue  # name, type, or a field from a newer version
        if type(spec) is tuple:
            if type(v) is not int or v < spec[0] or v > spec[1]:
                return False
        elif spec == "str":
            if type(v) is not str:
                return False
        elif spec == "content":
            if type(v) is not list:
                return False
            for b in v:
                if type(b) is not bytes or len(b) != 32:
                    return False
        elif spec == "id":
            if type(v) is not bytes or len(v) != 32:
                return False
        elif spec == "bool":
            if type(v) is not bool:
                return False
        elif spec == "target":
            if _check_target(k, v, t) is not None:
                return False
        elif _check_xattrs(k, v, t) is not None:
            return False
    if t == DIR:
        return "subtree" in m
    return t != SYMLINK or "target" in m


def _explain(m: Any) -> str | None:
    """``node_problem``'s full check, naming the first problem it finds."""
    if type(m) is not dict:
        return f"is {kind(m)}, not a map"
    problem = name_problem(m.get("name"))
    if problem is not None:
        return problem
    t = m.get("type")
    if type(t) is not str or t not in _TYPES:
        return (f"type {show(t)} is unknown" if type(t) is str
                else f"type is {kind(t)}, not a string")
    for k, v in m.items():
        spec = _SPEC.get(k)
        if spec is None:
            continue  # name and type (checked above), or a field from a newer version
        if isinstance(spec, tuple):
            if type(v) is not int or not spec[0] <= v <= spec[1]:
                return check_int(k, v, *spec)
        else:
            problem = spec(k, v, t)
            if problem is not None:
                return problem
    if t == DIR and "subtree" not in m:
        return "a directory has no subtree"
    if t == SYMLINK and "target" not in m:
        return "a symlink has no target"
    return None


def _only(owners: tuple[str, ...], check: _Check) -> _Check:
    """``check``, for a field only nodes of the types ``owners`` may have."""
    def checked(k: str, v: Any, t: str) -> str | None:
        return f"a {t} has a {k} field" if t not in owners else check(k, v, t)
    return checked


def _check_content(k: str, v: Any, t: str) -> str | None:
    if type(v) is not list:
        return f"{k} is {kind(v)}, not a list of ids"
    for i, b in enumerate(v):
        if type(b) is not bytes or len(b) != 32:
            return check_id(f"{k} entry {i}", b)
    return None


def _check_target(k: str, v: Any, t: str) -> str | None:
    if type(v) is not bytes:
        return f"{k} is {kind(v)}, not a byte string"
    if not v or b"\0" in v:
        return f"{k} is empty" if not v else f"{k} contains a NUL byte"
    return None


def _check_xattrs(k: str, v: Any, t: str) -> str | None:
    if type(v) is not list:
        return f"{k} is {kind(v)}, not a list of pairs"
    prev = b""
    for i, pair in enumerate(v):
        if (type(pair) is not list or len(pair) != 2 or type(pair[0]) is not bytes
                or type(pair[1]) is not bytes):
            return f"{k} entry {i} is not a pair of byte strings"
        if not pair[0] or b"\0" in pair[0]:
            return f"{k} entry {i} has an empty name or one with a NUL byte"
        if pair[0] <= prev:
            return f"{k} entry {i} ({show(pair[0])}) is unsorted or a duplicate"
        prev = pair[0]
    return None


_SPEC: dict[str, tuple[int, int] | _Check] = {
    "mode": (0, 0o7777),
    "uid": _U32,
    "gid": _U32,
    "user": lambda k, v, t: check_type(k, v, str, "a string"),
    "group": lambda k, v, t: check_type(k, v, str, "a string"),
    "mtime_ns": _I64,
    "ctime_ns": _I64,
    "inode": _U64,
    "device": _U64,
    "nlink": _U64,
    "size": (0, I64_MAX),
    "rdev": _only((CHARDEV, BLOCKDEV), lambda k, v, t: check_int(k, v, *_U64)),
    "content": _only((FILE,), _check_content),
    "subtree": _only((DIR,), lambda k, v, t: check_id(k, v)),
    "target": _only((SYMLINK,), _check_target),
    "xattrs": _check_xattrs,
    "sparse": lambda k, v, t: check_type(k, v, bool, "a boolean"),
}


@dataclass(frozen=True, slots=True)
class NodeProblem:
    """A node of a tree blob that failed validation: its position, its name when that is
    a byte string, and what is wrong (one line, no reprs)."""

    index: int
    name: bytes | None
    problem: str

    def label(self) -> str:
        return show(self.name) if self.name is not None else f"#{self.index}"


def _label(m: Any, i: int) -> str:
    name = m.get("name") if type(m) is dict else None
    return show(name) if type(name) is bytes else f"#{i}"


def _where(tree_id: bytes | None) -> str:
    return f"tree {tree_id.hex()[:16]}: " if tree_id is not None else "tree: "


def scan_tree(data: bytes | memoryview, tree_id: bytes | None = None,
              ) -> tuple[list[dict[str, Any]], list[NodeProblem]]:
    """The valid node maps of a tree blob (strictly sorted by name) and a problem for
    every other node. A blob that is not a map with a node list raises IntegrityError."""
    m = serde.unpack(data, _where(tree_id).rstrip(": ") or "tree")
    nodes = m.get("nodes") if type(m) is dict else None
    if type(nodes) is not list:
        raise IntegrityError(f"{_where(tree_id)}not a map with a node list")
    good: list[dict[str, Any]] = []
    bad: list[NodeProblem] = []
    prev: bytes | None = None
    for i, n in enumerate(nodes):
        problem = node_problem(n)
        name: Any = n.get("name") if type(n) is dict else None
        if problem is None and prev is not None and not prev < name:
            problem = f"is not after {show(prev)} (names unsorted or duplicate)"
        if problem is not None:
            bad.append(NodeProblem(i, name if type(name) is bytes else None, problem))
            continue
        good.append(n)
        prev = name
    return good, bad


def decode_maps(data: bytes | memoryview, tree_id: bytes | None = None,
                ) -> list[dict[str, Any]]:
    """The node maps of a tree blob, every one validated (no Node objects: the backup's
    fast path). Raises IntegrityError naming the tree and its first malformed node."""
    good, bad = scan_tree(data, tree_id)
    if bad:
        more = f" (and {len(bad) - 1} more malformed nodes)" if len(bad) > 1 else ""
        raise IntegrityError(f"{_where(tree_id)}node {bad[0].label()}: {bad[0].problem}{more}")
    return good


def encode_maps(maps: list[dict[str, Any]]) -> bytes:
    """Encode a tree from node maps already in canonical form (``Node.to_map`` output, or
    maps decoded from a stored tree); sorts by name like ``Tree.encode``."""
    maps.sort(key=lambda m: m["name"])  # type: ignore[no-any-return]
    return serde.pack({"nodes": maps})


@dataclass(slots=True)
class Tree:
    nodes: list[Node] = field(default_factory=list)

    def encode(self) -> bytes:
        self.nodes.sort(key=lambda n: n.name)
        return serde.pack({"nodes": [n.to_map() for n in self.nodes]})

    @classmethod
    def decode(cls, data: bytes | memoryview, tree_id: bytes | None = None) -> Tree:
        """A tree blob's nodes, every one validated (``decode_maps``)."""
        return cls.from_valid_maps(decode_maps(data, tree_id))

    @classmethod
    def from_valid_maps(cls, maps: list[dict[str, Any]]) -> Tree:
        """A tree of maps ``scan_tree`` or ``decode_maps`` returned (not checked again)."""
        return cls([Node._of(m) for m in maps])

    @classmethod
    def decode_again(cls, data: bytes | memoryview) -> Tree:
        """The nodes of a tree blob whose very bytes ``decode`` accepted earlier in this
        process, without validating them a second time (~40 % of a decode): only for a
        blob fetched again by a tree id whose blob decoded without error before -- the
        store re-hashes every blob it hands out against its keyed id, so the same id is
        the same bytes (restore's writing pass over the trees its checking pass
        decoded). Anything else goes through ``decode``."""
        return cls.from_valid_maps(serde.unpack(data, "tree")["nodes"])

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


# ----- ids only: what gc's mark needs from a tree blob ---------------------------------


def tree_ids(data: bytes | memoryview, tree_id: bytes | None = None,
             ) -> tuple[list[bytes], list[bytes]]:
    """(data BlobIds of every file, subtree ids of every directory) of a tree blob, in
    node order, without a ``Node`` per entry (gc's mark). It accepts exactly the blobs
    ``decode`` accepts (IntegrityError with the same line otherwise) and its ids are
    ``[b for n in decode(...).nodes for b in n.content or ()]`` and
    ``[n.subtree for n in decode(...).nodes if n.type == DIR]``: a tree whose nodes all
    pass ``_all_plainly_valid`` (the column-wise form of ``_plainly_valid``, which
    accepts only trees ``scan_tree`` accepts whole) is read from the one unpack; any
    other goes through ``decode_maps`` for the verdict and its words."""
    m = serde.unpack(data, _where(tree_id).rstrip(": ") or "tree")
    nodes = m.get("nodes") if type(m) is dict else None
    maps: list[dict[str, Any]] = (
        nodes if type(nodes) is list and _all_plainly_valid(nodes)
        else decode_maps(data, tree_id))
    content = list(chain.from_iterable([m["content"] for m in maps if "content" in m]))
    subtrees = [m["subtree"] for m in maps if m["type"] == DIR]
    return content, subtrees


def _types(col: tuple[Any, ...]) -> set[type]:
    return set(map(type, col))


def _column_valid(field: str, col: tuple[Any, ...]) -> bool:
    """Every value of ``col`` passes ``_plainly_valid``'s check of known field FIELD."""
    spec = _FAST[field]
    if type(spec) is tuple:
        return _types(col) == {int} and min(col) >= spec[0] and max(col) <= spec[1]
    if spec == "str":
        return _types(col) == {str}
    if spec == "bool":
        return _types(col) == {bool}
    if spec == "id":
        return _types(col) == {bytes} and set(map(len, col)) == {32}
    if spec == "content":
        if _types(col) != {list}:
            return False
        flat = tuple(chain.from_iterable(col))
        return not flat or (_types(flat) == {bytes} and set(map(len, flat)) == {32})
    if spec == "target":
        return all(_check_target(field, v, SYMLINK) is None for v in col)
    return all(_check_xattrs(field, v, "") is None for v in col)


def _all_plainly_valid(nodes: list[Any]) -> bool:
    """True only if every node passes ``_plainly_valid`` and their names strictly
    increase (so ``scan_tree`` accepts the tree whole), checked a column of one field
    at a time over the nodes of each key set; False means "ask ``scan_tree``".
    (tests/unit/model/test_tree_ids.py checks it against the per-node check.)"""
    if not nodes:
        return True
    if _types(tuple(nodes)) != {dict}:
        return False
    shapes: dict[tuple[Any, ...], list[dict[Any, Any]]] = {}
    for m in nodes:
        shapes.setdefault(tuple(m), []).append(m)
    for keys, group in shapes.items():
        if "name" not in keys or "type" not in keys or len(keys) < 2:
            return False
        cols = dict(zip(keys, zip(*map(itemgetter(*keys), group), strict=True), strict=True))
        kinds = cols["type"]
        if _types(kinds) != {str}:
            return False
        for t in set(kinds):
            foreign = _FOREIGN.get(t)
            if foreign is None or any(f in cols for f in foreign):
                return False
            if (t == DIR and "subtree" not in cols) or (t == SYMLINK and "target" not in cols):
                return False
        for k, col in cols.items():
            if k in _FAST and not _column_valid(k, col):
                return False
    names = [m["name"] for m in nodes]
    if _types(tuple(names)) != {bytes} or min(map(len, names)) == 0:
        return False
    joined = b"".join(names)
    if b"/" in joined or b"\0" in joined or not {b".", b".."}.isdisjoint(names):
        return False
    return all(map(lt, names, names[1:]))
