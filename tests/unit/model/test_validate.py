"""Strict decoding of tree and snapshot blobs (issue #11, "no shape of data makes a
snapshot unrestorable"): any bytes give validated nodes or one IntegrityError naming the
tree and the node, never another exception; valid trees decode exactly as before."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup import serde
from casbackup.errors import IntegrityError
from casbackup.model import tree as mt
from casbackup.model.snapshot import Snapshot, Summary
from casbackup.model.tree import Node, Tree, decode_maps, name_problem, node_problem, scan_tree

TID = bytes(range(32))
ID = b"\x11" * 32

# msgpack values of every kind the unpacker can produce, nested
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text(max_size=8) | st.binary(max_size=40))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.binary(max_size=4)
                                        | st.integers(-(2**63), 2**64 - 1), inner, max_size=4),
                      max_leaves=20)

good_names = st.binary(min_size=1, max_size=20).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))


def _good_node(name: bytes, t: str) -> dict[str, Any]:
    n = Node(name, t, mode=0o4755, uid=2**32 - 1, gid=0, user="u", group="g",
             mtime_ns=-(2**63), ctime_ns=2**63 - 1, inode=2**64 - 1, device=2**64 - 1,
             nlink=3, size=2**63 - 1, xattrs={b"user.b": b"", b"user.a": b"\0"})
    if t == mt.FILE:
        n.content, n.sparse = [ID, ID], True
    elif t == mt.DIR:
        n.subtree, n.size = ID, 0
    elif t == mt.SYMLINK:
        n.target = b"../x\xff"
    elif t in (mt.CHARDEV, mt.BLOCKDEV):
        n.rdev = 2**64 - 1
    return n.to_map()


def _one_line(e: IntegrityError, *parts: str) -> None:
    msg = str(e)
    assert "\n" not in msg and "Traceback" not in msg
    for p in parts:
        assert p in msg, (p, msg)


@given(st.binary(max_size=200))
@settings(max_examples=400)
def test_any_bytes_decode_to_a_tree_or_integrity_error(data: bytes) -> None:
    for decode in (lambda d: Tree.decode(d, TID), lambda d: decode_maps(d, TID),
                   lambda d: scan_tree(d, TID), lambda d: Snapshot.decode(d, "ab" * 32),
                   serde.unpack):
        try:
            decode(data)
        except IntegrityError as e:
            _one_line(e)


@given(values)
@settings(max_examples=400)
def test_any_msgpack_value_decodes_or_raises_integrity_error(v: Any) -> None:
    for wrapped in (v, {"nodes": v}, {"nodes": [v]}, {"nodes": [{"name": b"a", "type": mt.FILE,
                                                                 "mode": v}]}):
        data = serde.pack(wrapped)
        try:
            tree = Tree.decode(data, TID)
        except IntegrityError as e:
            _one_line(e, "tree 0001020304050607")
        else:  # whatever was accepted is a well-formed tree
            assert [n.name for n in tree.nodes] == sorted({n.name for n in tree.nodes})
            for n in tree.nodes:
                assert node_problem(n.to_map()) is None
        try:
            Snapshot.decode(data, "cd" * 32)
        except IntegrityError as e:
            _one_line(e, "snapshot cdcdcdcd")


@given(st.lists(st.tuples(good_names, st.sampled_from(mt.TYPES)), unique_by=lambda x: x[0],
                max_size=12))
def test_valid_trees_of_every_type_decode_exactly_as_encoded(spec: list[tuple[bytes, str]]
                                                            ) -> None:
    nodes = [Node.from_map(_good_node(n, t)) for n, t in spec]
    data = Tree(list(nodes)).encode()
    back = Tree.decode(data, TID)
    assert back.nodes == sorted(nodes, key=lambda n: n.name)
    assert Tree(back.nodes).encode() == data
    assert decode_maps(data) == [n.to_map() for n in back.nodes]


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    m: dict[Any, Any] = {**_good_node(b"f", mt.FILE), "future": [1, {"x": None}]}
    m[b"bytes-key"] = 1
    data = serde.pack({"nodes": [m], "also": "new"})
    (n,) = Tree.decode(data, TID).nodes
    assert n == Node.from_map(_good_node(b"f", mt.FILE))


# (description, node map or a change to a good one, words the message must hold)
BAD: list[tuple[str, Any, str]] = [
    ("not a map", [b"a", "file"], "#0: is a list, not a map"),
    ("nil node", None, "#0: is nil"),
    ("name a string", {"name": "a", "type": mt.FILE}, "name is a string"),
    ("name missing", {"type": mt.FILE}, "name is nil"),
    ("name empty", {"name": b"", "type": mt.FILE}, "name is empty"),
    ("name dot", {"name": b".", "type": mt.DIR, "subtree": ID}, "name is ."),
    ("name dotdot", {"name": b"..", "type": mt.DIR, "subtree": ID}, "name is .."),
    ("name slash", {"name": b"a/b", "type": mt.FILE}, "'/'"),
    ("name NUL", {"name": b"a\0b", "type": mt.FILE}, "NUL"),
    ("type unknown", {"name": b"a", "type": "door"}, "type door is unknown"),
    ("type bytes", {"name": b"a", "type": b"file"}, "type is a byte string"),
    ("mode 2**64-1", {"mode": 2**64 - 1}, "mode 18446744073709551615 is out of range"),
    ("mode above 0o7777", {"mode": 0o10000}, "mode 4096"),
    ("mode a bool", {"mode": True}, "mode is a boolean"),
    ("uid -2", {"uid": -2}, "uid -2 is out of range"),
    ("gid 2**32", {"gid": 2**32}, "gid 4294967296"),
    ("size negative", {"size": -1}, "size -1"),
    ("size a float", {"size": 1.5}, "size is a float"),
    ("mtime a string", {"mtime_ns": "now"}, "mtime_ns is a string"),
    ("nlink nil", {"nlink": None}, "nlink is nil"),
    ("user bytes", {"user": b"root"}, "user is a byte string"),
    ("content a string", {"content": "abc"}, "content is a string"),
    ("content short id", {"content": [ID, b"x"]}, "content entry 1 is 1 bytes"),
    ("content id a list", {"content": [[1]]}, "content entry 0 is a list"),
    ("sparse an int", {"sparse": 1}, "sparse is an integer"),
    ("xattrs a map", {"xattrs": {b"a": b"b"}}, "xattrs is a map"),
    ("xattr not a pair", {"xattrs": [[b"a"]]}, "xattrs entry 0 is not a pair"),
    ("xattr value str", {"xattrs": [[b"a", "v"]]}, "xattrs entry 0 is not a pair"),
    ("xattrs unsorted", {"xattrs": [[b"b", b""], [b"a", b""]]}, "xattrs entry 1"),
    ("xattrs duplicate", {"xattrs": [[b"a", b""], [b"a", b""]]}, "duplicate"),
    ("ext value", {"uid": msgpack.ExtType(5, b"x")}, "uid is an extension value"),
    ("subtree missing", {"name": b"d", "type": mt.DIR}, "a directory has no subtree"),
    ("subtree short", {"name": b"d", "type": mt.DIR, "subtree": b"abc"}, "subtree is 3 bytes"),
    ("subtree on a file", {"subtree": ID}, "a file has a subtree field"),
    ("content on a dir", {"name": b"d", "type": mt.DIR, "subtree": ID, "content": []},
     "a dir has a content field"),
    ("rdev on a file", {"rdev": 1}, "a file has a rdev field"),
    ("target missing", {"name": b"l", "type": mt.SYMLINK}, "a symlink has no target"),
    ("target NUL", {"name": b"l", "type": mt.SYMLINK, "target": b"a\0"}, "target contains a NUL"),
    ("target empty", {"name": b"l", "type": mt.SYMLINK, "target": b""}, "target is empty"),
    ("target a string", {"name": b"l", "type": mt.SYMLINK, "target": "x"}, "target is a string"),
]


@pytest.mark.parametrize(("what", "bad", "words"), BAD, ids=[b[0] for b in BAD])
def test_each_malformed_node_is_refused_naming_tree_node_and_problem(
        what: str, bad: Any, words: str) -> None:
    m = {**_good_node(b"f", mt.FILE), **bad} if isinstance(bad, dict) and (
        "name" not in bad and "type" not in bad) else bad
    ok = _good_node(b"0-first", mt.FIFO)
    data = serde.pack({"nodes": [ok, m]})
    with pytest.raises(IntegrityError) as ei:
        Tree.decode(data, TID)
    _one_line(ei.value, "tree 0001020304050607", words.replace("#0", "#1"))
    good, problems = scan_tree(data, TID)  # verify's view: the rest of the tree survives
    assert good == [ok] and len(problems) == 1 and problems[0].index == 1
    with pytest.raises(IntegrityError):
        Node.from_map(m)


@pytest.mark.parametrize("names", [[b"b", b"a"], [b"a", b"a"], [b"a", b"c", b"b"]])
def test_unsorted_or_duplicate_names_are_refused(names: list[bytes]) -> None:
    data = serde.pack({"nodes": [_good_node(n, mt.FIFO) for n in names]})
    with pytest.raises(IntegrityError, match="unsorted or duplicate"):
        Tree.decode(data, TID)
    good, problems = scan_tree(data, TID)
    kept = [m["name"] for m in good]
    assert kept == sorted(set(kept)) and len(good) + len(problems) == len(names) == len(kept) + 1


def test_tree_that_is_not_a_node_list_is_refused() -> None:
    v: Any
    for v in ([], {"nodes": {}}, {"nodes": None}, {b"nodes": []}, 7):
        with pytest.raises(IntegrityError, match="tree 0001020304050607: not a map"):
            Tree.decode(serde.pack(v), TID)


def test_name_problem_accepts_exactly_plain_names() -> None:
    assert name_problem(b"db.sql") is None and name_problem(b"\xff\n x") is None
    for bad in (b"", b".", b"..", b"a/b", b"/a", b"a\0", "a", None):
        assert name_problem(bad) is not None


def test_messages_show_hostile_names_on_one_printable_line() -> None:
    data = serde.pack({"nodes": [{**_good_node(b"evil\n\x1b[31m\xff", mt.FILE), "uid": -1}]})
    with pytest.raises(IntegrityError) as ei:
        Tree.decode(data, TID)
    msg = str(ei.value)
    assert msg.isprintable() and "evil\\x0a\\x1b[31m\\xff" in msg


# ----- snapshots -----------------------------------------------------------------------

def _snap_map() -> dict[str, Any]:
    s = Snapshot(1.5, "h", "u", ["/a"], ID, type="full", tags=["t"], parent="ab" * 32,
                 original="cd" * 32, summary=Summary(files_new=3, duration=0.5))
    m: dict[str, Any] = serde.unpack(s.encode())
    return m


SNAP_BAD: list[tuple[dict[str, Any], str]] = [
    ({"version": 2}, "unknown version 2"),
    ({"version": "1"}, "unknown version a string"),
    ({"time": math.nan}, "time is nan"),
    ({"time": -1}, "time is -1"),
    ({"time": 1e300}, "time is 1e+300"),
    ({"time": "now"}, "time is a string"),
    ({"hostname": None}, "hostname is nil"),
    ({"paths": "/a"}, "paths is a string"),
    ({"paths": [1]}, "paths entry 0 is an integer"),  # (bytes: a non-UTF-8 path, allowed)
    ({"tags": [1]}, "tags entry 0 is an integer"),
    ({"type": "weekly"}, "type is unknown"),
    ({"tree": "ab" * 32}, "tree is a string"),
    ({"tree": b"x"}, "tree is 1 bytes"),
    ({"parent": "xyz"}, "parent is a string, not a snapshot id"),
    ({"original": 5}, "original is an integer"),
    ({"summary": []}, "summary is a list"),
    ({"summary": {"files_new": -1}}, "summary files_new -1"),
    ({"summary": {"duration": "long"}}, "summary duration is a string"),
    ({"summary": {"duration": math.inf}}, "summary duration is inf"),
]


@pytest.mark.parametrize(("change", "words"), SNAP_BAD, ids=[w for _, w in SNAP_BAD])
def test_each_malformed_snapshot_is_refused_naming_it(change: dict[str, Any], words: str
                                                      ) -> None:
    with pytest.raises(IntegrityError) as ei:
        Snapshot.decode(serde.pack({**_snap_map(), **change}), "ef" * 32)
    _one_line(ei.value, "snapshot efefefef", words)


@pytest.mark.parametrize("field", ["version", "time", "hostname", "username", "paths",
                                   "tags", "type", "tree"])
def test_snapshot_missing_a_required_field_is_refused(field: str) -> None:
    m = _snap_map()
    del m[field]
    with pytest.raises(IntegrityError, match=f"snapshot efefefef has no {field}"):
        Snapshot.decode(serde.pack(m), "ef" * 32)


def test_snapshot_roundtrip_keeps_every_field_and_ignores_unknown_ones() -> None:
    m = {**_snap_map(), "future": {"x": 1}, "summary": {**_snap_map()["summary"], "new": -1}}
    s = Snapshot.decode(serde.pack(m), "ef" * 32)
    assert (s.time, s.hostname, s.paths, s.tags, s.type, s.tree, s.parent, s.original) == (
        1.5, "h", ["/a"], ["t"], "full", ID, "ab" * 32, "cd" * 32)
    assert s.summary.files_new == 3 and s.summary.duration == 0.5
    old = {k: v for k, v in _snap_map().items() if k not in ("parent", "original", "summary")}
    assert Snapshot.decode(serde.pack(old)).summary == Summary()  # optional fields absent


_FIELDS = ["name", "type", "mode", "uid", "gid", "user", "group", "mtime_ns", "ctime_ns",
           "inode", "device", "nlink", "size", "rdev", "content", "subtree", "target",
           "xattrs", "sparse", "future"]
field_values = (values | st.just(ID) | st.lists(st.just(ID), max_size=2)
                | st.sampled_from([0, -1, 2**32, 2**63, 2**64 - 1, b"", b".", b"a/b", b"a\0"]
                                  + list(mt.TYPES)))


@given(st.sampled_from(mt.TYPES), st.dictionaries(st.sampled_from(_FIELDS), field_values,
                                                  max_size=4),
       st.lists(st.sampled_from(_FIELDS), max_size=3))
@settings(max_examples=1000)
def test_fast_path_accepts_only_what_the_full_check_accepts(
        t: str, changes: dict[str, Any], drop: list[str]) -> None:
    m = {**_good_node(b"n", t), **changes}
    for f in drop:
        m.pop(f, None)
    assert node_problem(m) == mt._explain(m)
    if mt._plainly_valid(m):
        assert mt._explain(m) is None


@pytest.mark.parametrize("t", mt.TYPES)
def test_fast_path_takes_every_good_node(t: str) -> None:
    assert mt._plainly_valid(_good_node(b"n", t))
    assert mt._plainly_valid(Node(b"n", t, subtree=ID if t == mt.DIR else None,
                                  target=b"x" if t == mt.SYMLINK else None).to_map())
