"""The one tree walker (issue #13 point 2, issue #11 deep trees): on random DAGs of trees
(shared subtrees, as dedup makes them) ``walk`` yields exactly a recursive listing's
entries in its order, ``once`` descends each tree once, ``fold`` computes each tree's
value once and equal to a recursive computation; ``walk_pair`` pairs two trees' entries
as a recursive side-by-side merge does and never loads an equal subtree; a 5,000-level
chain needs no recursion. The walker lives in ``model.treewalk`` (store/ walks with it
too); ``ops.treewalk`` re-exports it."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.errors import IntegrityError
from casbackup.model import treewalk as core
from casbackup.model.tree import DIR, FILE, Node, Tree
from casbackup.ops import treewalk
from casbackup.ops.treewalk import Entry, Pair, Totals, fold, tree_totals, walk, walk_pair

untimed = settings(deadline=None)  # no per-example time limit: a loaded 2-core machine runs these


def _tid(i: int) -> bytes:
    return i.to_bytes(32, "big")


@st.composite
def dags(draw: st.DrawFn) -> dict[bytes, Tree]:
    """Trees 0..n-1, tree i's directories pointing at trees < i; the root is n-1."""
    n = draw(st.integers(1, 12))
    trees: dict[bytes, Tree] = {}
    for i in range(n):
        names = draw(st.lists(st.binary(min_size=1, max_size=3).filter(
            lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")),
            unique=True, max_size=5))
        nodes = []
        for name in names:
            if i and draw(st.booleans()):
                nodes.append(Node(name, DIR, subtree=_tid(draw(st.integers(0, i - 1)))))
            else:
                nodes.append(Node(name, FILE, size=draw(st.integers(0, 100))))
        trees[_tid(i)] = Tree(sorted(nodes, key=lambda x: x.name))
    return trees


def _listing(trees: dict[bytes, Tree], tid: bytes, path: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for n in trees[tid].nodes:
        p = path + b"/" + n.name
        out.append((p, n.name))
        if n.type == DIR and n.subtree is not None:
            out.extend(_listing(trees, n.subtree, p))
    return out


class Counting:
    def __init__(self, trees: dict[bytes, Tree]) -> None:
        self.trees = trees
        self.loads: list[bytes] = []

    def __call__(self, tid: bytes) -> Tree:
        self.loads.append(tid)
        return self.trees[tid]


@untimed
@given(dags(), st.sampled_from([b"", b"/snap/x"]))
def test_walk_is_a_recursive_listing_in_order(trees: dict[bytes, Tree], base: bytes) -> None:
    root = _tid(len(trees) - 1)
    got = [(e.path, e.node.name) for e in walk(trees.__getitem__, root, path=base)]
    assert got == _listing(trees, root, base)


@untimed
@given(dags())
def test_once_descends_each_distinct_tree_once(trees: dict[bytes, Tree]) -> None:
    root = _tid(len(trees) - 1)
    load = Counting(trees)
    entries = list(walk(load, root, once=True))
    assert len(load.loads) == len(set(load.loads))
    reachable = {root} | {e.node.subtree for e in _all_entries(trees, root) if e.node.subtree}
    assert set(load.loads) == reachable
    assert all(e.node in trees[e.tree_id].nodes for e in entries)


def _all_entries(trees: dict[bytes, Tree], root: bytes) -> list[Entry]:
    return list(walk(trees.__getitem__, root))


@untimed
@given(dags(), st.lists(st.integers(0, 11), min_size=1, max_size=4))
def test_a_shared_seen_set_loads_each_tree_once_over_many_walks(
        trees: dict[bytes, Tree], roots: list[int]) -> None:
    load = Counting(trees)
    seen: set[bytes] = set()
    for r in roots:
        list(walk(load, _tid(r % len(trees)), once=True, seen=seen))
    assert len(load.loads) == len(set(load.loads))
    assert set(load.loads) == seen


@untimed
@given(dags())
def test_descend_false_prunes_exactly_that_subtree(trees: dict[bytes, Tree]) -> None:
    root = _tid(len(trees) - 1)
    got = [e.path for e in walk(trees.__getitem__, root, descend=lambda e: False)]
    assert got == [b"/" + n.name for n in trees[root].nodes]


def _totals(trees: dict[bytes, Tree], tid: bytes) -> Totals:
    f = d = s = 0
    for n in trees[tid].nodes:
        if n.type == DIR and n.subtree is not None:
            a, b, c = _totals(trees, n.subtree)
            f, d, s = f + a, d + b + 1, s + c
        else:
            f, s = f + 1, s + n.size
    return Totals(f, d, s)


@untimed
@given(dags())
def test_fold_totals_each_tree_once_and_match_recursion(trees: dict[bytes, Tree]) -> None:
    root = _tid(len(trees) - 1)
    load = Counting(trees)
    memo: dict[bytes, Totals] = {}
    assert fold(load, root, tree_totals, memo) == _totals(trees, root)
    assert len(load.loads) == len(set(load.loads))
    assert all(v == _totals(trees, k) for k, v in memo.items())
    load.loads.clear()
    fold(load, root, tree_totals, memo)  # memoised across calls (many snapshots)
    assert load.loads == []


def test_fold_on_error_values_unloadable_trees_and_goes_on() -> None:
    trees = {_tid(1): Tree([Node(b"a", DIR, subtree=_tid(9)), Node(b"b", FILE, size=5)])}

    def load(tid: bytes) -> Tree:
        if tid not in trees:
            raise IntegrityError(f"tree {tid.hex()[:16]} is missing")
        return trees[tid]

    errors: list[str] = []

    def on_error(tid: bytes, e: Exception) -> Totals:
        errors.append(str(e))
        return Totals(0, 0, 0)

    assert fold(load, _tid(1), tree_totals, {}, on_error=on_error) == Totals(1, 1, 5)
    assert len(errors) == 1
    with pytest.raises(IntegrityError, match="is missing"):
        fold(load, _tid(1), tree_totals, {})


DEPTH = 5000


def _chain(depth: int) -> dict[bytes, Tree]:
    trees = {_tid(0): Tree([Node(b"leaf", FILE, size=7)])}
    for i in range(1, depth + 1):
        trees[_tid(i)] = Tree([Node(b"d", DIR, subtree=_tid(i - 1)),
                               Node(b"f", FILE, size=1)])
    return trees


def test_deep_chain_walks_and_folds_below_a_tiny_recursion_limit() -> None:
    trees = _chain(DEPTH)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100)  # any recursion per level would fail at once
    try:
        entries = list(walk(trees.__getitem__, _tid(DEPTH)))
        totals = fold(trees.__getitem__, _tid(DEPTH), tree_totals, {})
    finally:
        sys.setrecursionlimit(old)
    assert len(entries) == 2 * DEPTH + 1
    assert entries[DEPTH].path == b"/d" * DEPTH + b"/leaf" and entries[-1].path == b"/f"
    assert totals == Totals(DEPTH + 1, DEPTH, DEPTH + 7)


def test_a_tree_containing_itself_is_an_integrity_error_not_a_hang() -> None:
    loop = {_tid(1): Tree([Node(b"d", DIR, subtree=_tid(2))]),
            _tid(2): Tree([Node(b"e", DIR, subtree=_tid(1))])}
    with pytest.raises(IntegrityError, match="contains itself"):
        list(walk(loop.__getitem__, _tid(1)))
    with pytest.raises(IntegrityError, match="contains itself"):
        fold(loop.__getitem__, _tid(1), tree_totals, {})


def test_tree_totals_reads_subtree_values_from_the_memo() -> None:
    memo: Mapping[bytes, Totals] = {_tid(5): Totals(3, 2, 100)}
    t = Tree([Node(b"a", DIR, subtree=_tid(5)), Node(b"b", FILE, size=1)])
    assert tree_totals(_tid(6), t, memo) == Totals(4, 3, 101)


def _pairs(trees: dict[bytes, Tree], a: bytes, b: bytes, path: bytes
           ) -> list[tuple[bytes, Node | None, Node | None]]:
    """A recursive side-by-side merge: the specification of ``walk_pair``."""
    if a == b:
        return []
    na = {n.name: n for n in trees[a].nodes}
    nb = {n.name: n for n in trees[b].nodes}
    out: list[tuple[bytes, Node | None, Node | None]] = []
    for name in sorted(na.keys() | nb.keys()):
        x, y = na.get(name), nb.get(name)
        p = path + b"/" + name
        out.append((p, x, y))
        if (x is not None and y is not None and x.type == DIR and y.type == DIR
                and x.subtree is not None and y.subtree is not None):
            out.extend(_pairs(trees, x.subtree, y.subtree, p))
    return out


@untimed
@given(dags(), st.data())
def test_walk_pair_is_a_recursive_merge_and_skips_equal_subtrees(
        trees: dict[bytes, Tree], data: st.DataObject) -> None:
    a = _tid(data.draw(st.integers(0, len(trees) - 1)))
    b = _tid(data.draw(st.integers(0, len(trees) - 1)))
    load = Counting(trees)
    got = [(p.path, p.a, p.b) for p in walk_pair(load, a, b)]
    assert got == _pairs(trees, a, b, b"")
    # every tree loaded is one side of a pair of differing trees the merge compares
    compared = {a, b} if a != b else set()
    for _, x, y in got:
        if x is not None and y is not None and x.subtree and y.subtree and x.subtree != y.subtree:
            compared |= {x.subtree, y.subtree}
    assert set(load.loads) == compared


def test_walk_pair_never_loads_an_equal_subtree() -> None:
    shared, old, new = _tid(1), _tid(2), _tid(3)
    trees = {shared: Tree([Node(b"x", FILE, size=1)]),
             old: Tree([Node(b"d", DIR, subtree=shared), Node(b"f", FILE, size=1)]),
             new: Tree([Node(b"d", DIR, subtree=shared), Node(b"f", FILE, size=2)])}
    load = Counting(trees)
    got = list(walk_pair(load, old, new, path=b"/r"))
    assert [p.path for p in got] == [b"/r/d", b"/r/f"] and shared not in load.loads
    assert got[1] == Pair(b"/r/f", trees[old].nodes[1], trees[new].nodes[1])
    assert list(walk_pair(load, old, old)) == []


def test_ops_treewalk_is_the_model_walker() -> None:
    """One implementation: ops re-exports model's functions, it does not wrap them."""
    for name in ("walk", "walk_pair", "fold", "tree_totals", "Entry", "Pair", "Totals"):
        assert getattr(treewalk, name) is getattr(core, name)


def test_walk_pair_of_two_deep_chains_needs_no_recursion() -> None:
    a = _chain(DEPTH)
    b = {_tid(i + 10**6): Tree([Node(n.name, n.type, size=n.size + 1,
                                     subtree=_tid(int.from_bytes(n.subtree, "big") + 10**6)
                                     if n.subtree else None) for n in t.nodes])
         for i, t in ((int.from_bytes(k, "big"), t) for k, t in a.items())}
    trees = a | b
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100)
    try:
        got = list(walk_pair(trees.__getitem__, _tid(DEPTH), _tid(DEPTH + 10**6)))
    finally:
        sys.setrecursionlimit(old)
    assert len(got) == 2 * DEPTH + 1 and got[DEPTH].path == b"/d" * DEPTH + b"/leaf"
