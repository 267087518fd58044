"""The backup walker's view of one directory: its entries lstat-ed, and the nodes of the
subdirectories of a directory on the directory cache's fast path (archiver.py).

Invariants:
- ``lstat_all`` gives every name ``listdir`` gives, in name (byte) order, each with its
  lstat or the error of it: an entry is never dropped here (the walker warns about and
  counts the errors).
- A walk node (``walk_node``) carries only what walking its directory needs (name, type,
  device, inode; the tree id once finished); its map is ``kept_dir_map``'s: the recorded
  tree's map with the new tree id, which is the map a full node gives, the listing digest
  having matched its lstat -- or, where the recorded tree lacks it, a node read afresh.
- No store access; nothing here writes.
"""

from __future__ import annotations

import os
from typing import Any

from ..model.tree import DIR, Node
from ..source.meta import node_from_stat
from .walk_items import PendingDir


def lstat_all(dir_fd: int) -> list[tuple[bytes, os.stat_result | OSError]]:
    """Every entry of the directory open at DIR_FD with its lstat (or the error of it),
    in name order. (lstat in inode order, as borg's ``scandir_inorder``, was measured:
    no faster on a cold cache here, benchmarks/README.md.)"""
    got: list[tuple[bytes, os.stat_result | OSError]] = []
    for name in sorted(os.fsencode(n) for n in os.listdir(dir_fd)):
        try:
            got.append((name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)))
        except OSError as e:
            got.append((name, e))
    return got


def walk_node(name: bytes, st: os.stat_result) -> Node:
    """What walking a directory needs of its node (name, device, inode; its tree id is
    set when it is finished): a subdirectory of a directory on the cache's fast path."""
    return Node(name, DIR, inode=st.st_ino, device=st.st_dev)


def kept_dir_map(c: PendingDir, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """The map of C, a subdirectory of a directory on the cache's fast path: the
    recorded tree's with C's tree id (its lstat is the recorded one: the listing digest
    matched), or -- no such map, which a record never lacks -- its node read afresh."""
    if c.lstat is None:
        return c.node.to_map()  # (a full node: it was built as usual)
    if recorded is not None and recorded.get("type") == DIR:
        m = dict(recorded)
        m["subtree"] = c.node.subtree
        return m
    node = node_from_stat(c.node.name, c.path, c.lstat)
    node.subtree = c.node.subtree
    return node.to_map()
