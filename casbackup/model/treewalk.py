"""The one tree walker: every walk over a snapshot's trees goes through here.

Three shapes of walk, all iterative (an explicit stack: a tree 5,000 levels deep is walked
like a flat one; nothing here recurses):

- ``walk(load, root)`` yields every entry below ``root`` as an ``Entry`` (its path, its
  node, and the id of the tree holding it), depth first in name order: a directory comes
  right before its own entries, exactly the order of a recursive listing (``ls -R``,
  restore, diff's added/removed subtrees, sync's, gc's and a writer's commit check).
  ``descend`` decides per directory whether to go below it; ``once`` descends into each
  distinct tree once.
- ``walk_pair(load, a, b)`` walks two trees side by side (diff): every name of either
  tree once, as a ``Pair`` of its two nodes, in the same order; two directories are
  descended into together only when their subtree ids differ, so an unchanged subtree is
  never loaded.
- ``fold(load, root, total, memo)`` computes a value per tree in post-order, each
  distinct tree loaded once: ``total(tree_id, tree, memo)`` is called when the values of
  all the tree's subtrees are in ``memo`` (stats' totals, verify's lost paths, watch's
  progress totals, find). ``on_error`` turns a tree that cannot be loaded into a value
  instead of ending the walk.

This module lives in ``model/`` (pure: no I/O of its own) so that ``store/`` (the commit
check) and ``ops/`` walk with the same code; ``ops.treewalk`` adds the store's loaders.

Invariants: the walker only reads, through ``load`` (``Store.load_tree`` or a wrapper),
which returns validated trees (``model.tree``: names are safe path components, a
directory always has a subtree), so paths built here never contain ``/`` or ``..``
components of their own. A tree that contains itself (impossible with real BlobIds,
since ids are hashes; possible only through a broken loader) is an ``IntegrityError``,
never an endless walk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableSet
from typing import NamedTuple, TypeVar

from ..errors import CasError, IntegrityError
from .tree import DIR, FILE, Node, Tree

Loader = Callable[[bytes], Tree]
T = TypeVar("T")


class Entry(NamedTuple):
    path: bytes  # b"/"-joined from the walk's ``path`` argument (b"" for a snapshot root)
    node: Node
    tree_id: bytes  # the tree this entry is listed in


def join(path: bytes, name: bytes) -> bytes:
    return path + b"/" + name if path != b"/" else b"/" + name


def walk(load: Loader, root: bytes, *, path: bytes = b"", once: bool = False,
         seen: MutableSet[bytes] | None = None,
         descend: Callable[[Entry], bool] | None = None) -> Iterator[Entry]:
    """Every entry below tree ``root`` (whose own path is ``path``), depth first in name
    order. A directory entry is descended into unless ``descend(entry)`` says no, or
    ``once`` is set and its subtree was already descended into during this walk. With
    ``once``, ``seen`` (updated in place) holds trees descended by earlier walks too, so
    walks over many snapshots (gc's mark) load each distinct tree once in all; a root in
    it yields nothing."""
    if seen is None:
        seen = set()
    elif once and root in seen:
        return
    seen.add(root)
    stack: list[tuple[bytes, bytes, Iterator[Node]]] = [(path, root, iter(load(root).nodes))]
    on_stack: set[bytes] = {root}
    while stack:
        dir_path, tid, it = stack[-1]
        node = next(it, None)
        if node is None:
            stack.pop()
            on_stack.discard(tid)
            continue
        e = Entry(join(dir_path, node.name), node, tid)
        yield e
        sub = node.subtree
        if node.type != DIR or sub is None or (once and sub in seen):
            continue
        if descend is not None and not descend(e):
            continue
        if sub in on_stack:
            raise IntegrityError(f"tree {sub.hex()[:16]} contains itself")
        seen.add(sub)
        on_stack.add(sub)
        stack.append((e.path, sub, iter(load(sub).nodes)))


class Pair(NamedTuple):
    path: bytes  # as in ``Entry``
    a: Node | None  # the entry of the first tree; None where only the second has the name
    b: Node | None  # the entry of the second tree; None where only the first has it


def _subtree(n: Node | None) -> bytes | None:
    return n.subtree if n is not None and n.type == DIR else None


def walk_pair(load: Loader, a: bytes, b: bytes, *, path: bytes = b"") -> Iterator[Pair]:
    """The entries of trees ``a`` and ``b`` side by side: every name listed in either
    once, depth first in name order (a pair right before the pairs below it). A pair of
    directories is descended into together when their subtree ids differ; equal subtrees
    (and equal roots) are not loaded at all. Below a name only one side has, nothing is
    yielded (``walk`` lists such a subtree)."""
    if a == b:
        return

    def pairs(dir_path: bytes, ta: bytes, tb: bytes) -> Iterator[Pair]:
        na = {n.name: n for n in load(ta).nodes}
        nb = {n.name: n for n in load(tb).nodes}
        for name in sorted(na.keys() | nb.keys()):
            yield Pair(join(dir_path, name), na.get(name), nb.get(name))

    stack: list[tuple[tuple[bytes, bytes], Iterator[Pair]]] = [((a, b), pairs(path, a, b))]
    on_stack: set[tuple[bytes, bytes]] = {(a, b)}
    while stack:
        ids, it = stack[-1]
        p = next(it, None)
        if p is None:
            stack.pop()
            on_stack.discard(ids)
            continue
        yield p
        sa, sb = _subtree(p.a), _subtree(p.b)
        if sa is None or sb is None or sa == sb:
            continue
        if (sa, sb) in on_stack:
            raise IntegrityError(f"trees {sa.hex()[:16]}/{sb.hex()[:16]} contain themselves")
        on_stack.add((sa, sb))
        stack.append(((sa, sb), pairs(p.path, sa, sb)))


def fold(load: Loader, root: bytes, total: Callable[[bytes, Tree, Mapping[bytes, T]], T],
         memo: dict[bytes, T], *,
         on_error: Callable[[bytes, CasError], T] | None = None) -> T:
    """``memo[root]``, computing in post-order the value of every tree below it that is
    not in ``memo`` yet (each loaded once). A tree that fails to load with a ``CasError``
    gets ``on_error(tree_id, error)`` as its value, or the error propagates."""
    loaded: dict[bytes, Tree] = {}
    stack: list[bytes] = [root]
    while stack:
        tid = stack[-1]
        if tid in memo:
            stack.pop()
            continue
        tree = loaded.get(tid)
        if tree is None:
            try:
                tree = load(tid)
            except CasError as e:
                if on_error is None:
                    raise
                memo[tid] = on_error(tid, e)
                stack.pop()
                continue
            loaded[tid] = tree
            todo = [n.subtree for n in tree.nodes
                    if n.type == DIR and n.subtree is not None and n.subtree not in memo]
            for s in todo:
                if s in loaded:
                    raise IntegrityError(f"tree {s.hex()[:16]} contains itself")
            if todo:
                stack.extend(todo)
                continue
        stack.pop()
        del loaded[tid]
        memo[tid] = total(tid, tree, memo)
    return memo[root]


class Totals(NamedTuple):
    files: int
    dirs: int
    size: int  # the sum of the files' sizes


def tree_totals(tid: bytes, tree: Tree, memo: Mapping[bytes, Totals]) -> Totals:
    """``fold``'s ``total`` for files, directories and file bytes below a tree."""
    files = dirs = size = 0
    for n in tree.nodes:
        if n.type == DIR and n.subtree is not None:
            f, d, s = memo[n.subtree]
            files, dirs, size = files + f, dirs + d + 1, size + s
        elif n.type == FILE:
            files, size = files + 1, size + n.size
    return Totals(files, dirs, size)
