"""The ids-only reader of a tree blob (``model.tree.tree_ids``, gc's mark) against the
full decoder, on random trees of good and malformed nodes: it refuses exactly what
``Tree.decode`` refuses, with the same line, and otherwise gives exactly the content ids
of the files and the subtree ids of the directories, in node order. Its column-wise fast
check (``_all_plainly_valid``) may send a good tree to the full check but never takes a
tree the full check would refuse."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup import serde
from casbackup.errors import IntegrityError
from casbackup.model import tree as mt
from casbackup.model.tree import Node, Tree, scan_tree, tree_ids
from tests.unit.model.test_validate import _FIELDS, _good_node, field_values, good_names

TID = bytes(range(32))
ids32 = st.binary(min_size=32, max_size=32)


@st.composite
def good_node(draw: st.DrawFn, name: bytes) -> dict[str, Any]:
    t = draw(st.sampled_from(mt.TYPES))
    if draw(st.booleans()):
        m = _good_node(name, t)  # every field, at the edges of its range
    else:
        m = Node(name, t, mode=draw(st.integers(0, 0o7777)),
                 mtime_ns=draw(st.integers(-(2**63), 2**63 - 1)),
                 subtree=draw(ids32) if t == mt.DIR else None,
                 target=b"x" if t == mt.SYMLINK else None,
                 content=draw(st.lists(ids32, max_size=3)) if t == mt.FILE else None
                 ).to_map()
    if t == mt.FILE and "content" in m:
        m["content"] = draw(st.lists(ids32, max_size=3))
    if t == mt.DIR:
        m["subtree"] = draw(ids32)
    return m


@st.composite
def tree_maps(draw: st.DrawFn) -> list[Any]:
    names = sorted(draw(st.lists(good_names, unique=True, max_size=8)))
    nodes: list[Any] = [draw(good_node(n)) for n in names]
    # sometimes damage one node (a field changed or dropped), swap two, or add a non-map
    for _ in range(draw(st.integers(0, 2))):
        if not nodes:
            break
        i = draw(st.integers(0, len(nodes) - 1))
        if type(nodes[i]) is not dict:
            continue
        what = draw(st.sampled_from(["change", "drop", "swap", "junk", "future"]))
        if what == "change":
            nodes[i] = {**nodes[i], draw(st.sampled_from(_FIELDS)): draw(field_values)}
        elif what == "drop":
            nodes[i] = {k: v for k, v in nodes[i].items()
                        if k != draw(st.sampled_from(_FIELDS))}
        elif what == "swap":
            j = draw(st.integers(0, len(nodes) - 1))
            nodes[i], nodes[j] = nodes[j], nodes[i]
        elif what == "junk":
            nodes[i] = draw(st.sampled_from([None, 1, b"x", [], {}]))
        else:
            nodes[i] = {**nodes[i], "future": draw(field_values)}
    return nodes


def _full(data: bytes) -> tuple[list[bytes], list[bytes]] | str:
    try:
        nodes = Tree.decode(data, TID).nodes
    except IntegrityError as e:
        return str(e)
    return ([b for n in nodes for b in n.content or ()],
            [n.subtree for n in nodes if n.type == mt.DIR and n.subtree is not None])


@given(tree_maps())
@settings(max_examples=1500)
def test_ids_only_agrees_with_the_full_decoder(nodes: list[Any]) -> None:
    data = serde.pack({"nodes": nodes})
    want = _full(data)
    try:
        got: tuple[list[bytes], list[bytes]] | str = tree_ids(data, TID)
    except IntegrityError as e:
        got = str(e)
    assert got == want
    if mt._all_plainly_valid(nodes):
        assert scan_tree(data, TID)[1] == []  # never takes a tree scan_tree refuses


@given(st.lists(st.sampled_from(mt.TYPES), max_size=30))
def test_fast_check_takes_every_good_tree(types: list[str]) -> None:
    nodes = [_good_node(b"n%03d" % i, t) for i, t in enumerate(types)]
    nodes += [Node(b"p%03d" % i, t, subtree=TID if t == mt.DIR else None,
                   target=b"x" if t == mt.SYMLINK else None).to_map()
              for i, t in enumerate(types)]
    assert mt._all_plainly_valid(nodes)  # the fast path is the path for sound trees


@pytest.mark.parametrize("data", [serde.pack([]), serde.pack({"nodes": 3}), b"\xc1"])
def test_a_blob_that_is_no_tree_is_refused_like_decode(data: bytes) -> None:
    with pytest.raises(IntegrityError) as a:
        tree_ids(data, TID)
    with pytest.raises(IntegrityError) as b:
        Tree.decode(data, TID)
    assert str(a.value) == str(b.value)


edge_values = field_values | st.sampled_from(
    [0o10000, 2**32, -(2**63), 2**63, 2**64 - 1, True, 1.0, "x", [b"x"], [TID, 1]])


@given(st.lists(st.tuples(good_names, st.sampled_from(mt.TYPES)), min_size=1, max_size=6,
                unique_by=lambda x: x[0]),
       st.integers(0, 5), st.sampled_from(_FIELDS), edge_values)
@settings(max_examples=1500)
def test_one_changed_field_is_judged_like_the_full_decoder(
        spec: list[tuple[bytes, str]], i: int, field: str, value: Any) -> None:
    nodes = [_good_node(n, t) for n, t in sorted(spec)]
    nodes[i % len(nodes)] = {**nodes[i % len(nodes)], field: value}
    data = serde.pack({"nodes": nodes})
    try:
        got: tuple[list[bytes], list[bytes]] | str = tree_ids(data, TID)
    except IntegrityError as e:
        got = str(e)
    assert got == _full(data)
