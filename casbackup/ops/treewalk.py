"""The one tree walker, for ops: ``model.treewalk``'s walks (``walk``, ``walk_pair``,
``fold``, ``tree_totals``; their invariants are stated there) and the store's loaders.

Invariant: no walk is implemented here; this module only binds the walker to a ``Store``
(``uncached``) and re-exports it, so an operation imports its walker from ``ops``.
"""

from __future__ import annotations

from ..model.tree import Tree
from ..model.treewalk import Entry, Loader, Pair, Totals, fold, join, tree_totals, walk, walk_pair
from ..store import Store

__all__ = ["Entry", "Loader", "Pair", "Totals", "fold", "join", "tree_totals", "uncached",
           "walk", "walk_pair"]


def uncached(store: Store) -> Loader:
    """A loader that reads each tree from the store (or its object cache) without
    filling ``Store``'s in-memory tree cache (for walks that memoise per tree
    themselves, or see each tree once)."""
    return lambda tid: Tree.decode(store.tree_blob(tid), tid)
