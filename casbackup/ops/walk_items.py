"""What the backup walker holds while a directory's files are being saved (archiver.py).

Invariants:
- A ``PendingDir`` is finished (its tree saved) only after every child is: a ``Pending``
  file's result is its batch future's, read once per batch (``Pending.result``); a hard
  link's ``Pending`` points at the first path of its inode (read once per backup).
- A ``Frame`` owns one open directory fd until the walk pops it; a ``Descend`` owns the
  fd it carries until it becomes a frame (the walker closes both on every error).
- Nothing here does I/O or touches the store: plain records, no behaviour but lookups.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..model.tree import Node
from .dircache import DirRecord
from .file_saver import FileResult


@dataclass(slots=True)
class PendingDir:
    """A directory whose files may still be being saved."""

    node: Node
    children: list[Child] = field(default_factory=list)
    done: bool = False
    parent_subtree: bytes | None = None
    parent_maps: list[dict[str, Any]] | None = None
    digest: bytes | None = None  # its listing's (dircache.py), if a cache is kept
    rec: DirRecord | None = None  # the cache's record of that listing: the fast path
    kept: list[bytes] = field(default_factory=list)  # (fast path) its other entries' names
    recordable: bool = False  # no racy, unreadable or changed-while-read entry
    # (below a directory on the cache's fast path) its lstat and path: ``node`` holds only
    # its name, device and inode, the rest of its map is the recorded tree's
    lstat: os.stat_result | None = None
    path: bytes = b""


@dataclass(slots=True)
class Pending:
    """A file handed to the file saver: its result is ``fut.result()[idx]``. ``fut`` is
    None until the batch holding it is submitted; ``link_of`` is the first path of the
    same inode (hard links are read once)."""

    node: Node
    fut: Future[list[FileResult]] | None
    idx: int
    link_of: Pending | None = None
    # a racy entry equal to its parent node by lstat (read again): the parent's content,
    # and the path to report it by once read -- unchanged if the content is the same
    racy_content: list[bytes] | None = None
    path: bytes = b""

    def done(self) -> bool:
        src = self.link_of or self
        return src.fut is not None and src.fut.done()

    def result(self) -> FileResult:
        src = self.link_of or self
        assert src.fut is not None
        return src.fut.result()[src.idx]


@dataclass(slots=True)
class Frame:
    """A directory being walked: its open fd and the names still to visit."""

    pd: PendingDir
    fd: int
    path: bytes
    rel: bytes
    entries: Iterator[tuple[bytes, os.stat_result | OSError]]
    parent_tree: dict[bytes, dict[str, Any]] | None
    missing: frozenset[bytes]  # the ids parent_tree names not indexed (parent_index.py)
    subdirs: dict[bytes, bytes] | None  # the cache record's subdirectory tree ids


@dataclass(slots=True)
class Descend:
    """``Archiver._entry``'s answer for a directory to walk into (``fd`` is open on it)."""

    fd: int
    path: bytes
    node: Node
    parent_subtree: bytes | None
    rel: bytes
    lstat: os.stat_result | None = None  # set: ``node`` is a walk node (archiver.py)
    parent_indexed: bool = False  # parent_subtree is indexed: no lookup when entered


# A child is a new Node, a directory or file still being saved, or — the fast path — the
# parent snapshot's node map, reused verbatim for an entry whose (type, size, mtime, ctime,
# inode, device) are unchanged: any change to mode, owner, xattrs, link count or a symlink
# target updates ctime, so nothing else needs reading (not even listxattr). (A directory
# on the cache's fast path has only its subdirectories as children: ``PendingDir.kept``.)
Child = Node | PendingDir | Pending | dict[str, Any]
