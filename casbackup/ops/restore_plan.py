"""restore's plan: the snapshot's entries in tree order, checked before anything is written.

Invariants:
- The entries come from the one tree walker (``treewalk.walk``, iterative: any depth),
  each tree read once and not kept in the store's tree cache; every entry's parent comes
  before it (``Item.parent`` is its index, ``ROOT`` for the target itself).
- Every node was validated by the store's strict decoder (``model.tree``: safe, strictly
  sorted, unique names; each field of its type and in range; a directory has a subtree,
  a symlink a non-empty target). The plan checks only what the decoder cannot know:
  uid/gid 2^32-1 (``chown``'s "unchanged"), hard-link groups (same device and inode)
  whose members disagree about their content, and ``--strip-components`` mapping two
  entries to one path. Anything else is refused with ``IntegrityError`` / ``UsageError``
  before the target is touched.
- An item holds its node and one ``path`` (bytes, ``/``-joined below the target), not a
  tuple of components: a restore of many files holds one small object per entry.
- Include/exclude matching costs one match per entry at any depth (an entry is selected
  when it or an ancestor matches: the ancestors' answers are reused, not recomputed).
  ``Selection.wants`` answers the same question for a path that is not in the snapshot
  (what ``--delete`` may remove).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import IntegrityError, UsageError
from ..model.fields import U32
from ..model.tree import DIR, FILE, Node, Tree
from ..store import Store
from .restore_fs import ROOT, show
from .strip import strip_components
from .treewalk import uncached
from .treewalk import walk as tree_walk

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec


@dataclass(slots=True)
class Item:
    path: bytes  # below the target, b"/"-joined (b"a/b")
    node: Node
    parent: int = ROOT  # index of the directory item holding this one
    link_to: int | None = None  # index of the item this one is a hard link of
    own: bool = True  # at or below a backed-up path (``--delete`` may act inside it)

    @property
    def depth(self) -> int:
        return self.path.count(b"/")


def walk(store: Store, tree_id: bytes, *, base: bytes = b"", strip: int = 0,
         below: Callable[[bytes], bool] | None = None) -> tuple[list[Item], bool]:
    """Every entry below ``tree_id`` (the directory at snapshot path BASE) in tree order
    (depth first); with ``strip`` the first STRIP path components are dropped and
    shallower entries left out (borg's ``--strip-components``). ``Item.own`` is
    ``below(snapshot path)`` (default: True); the second value says the same of the
    target's root (every directory that lands there)."""
    base = b"" if base == b"/" else base
    out: list[Item] = []
    dirs: list[tuple[bytes, int]] = [(base, ROOT)]  # the directories leading to an entry
    seen: set[bytes] | None = set() if strip else None
    cut = len(base)
    own_root = below is None or (strip == 0 and below(base or b"/"))
    where = {tree_id: base or b"/"}  # a tree about to be loaded -> its path, for errors
    plain = uncached(store)

    def load(tid: bytes) -> Tree:
        try:
            return plain(tid)
        except IntegrityError as err:
            raise IntegrityError(f"{err} (at {show(where.get(tid, b'?'))})") from None
        finally:
            where.pop(tid, None)

    for e in tree_walk(load, tree_id, path=base):
        n = e.node
        if n.type == DIR and n.subtree is not None:
            where[n.subtree] = e.path
        if n.uid == U32 or n.gid == U32:
            raise IntegrityError(
                f"tree {e.tree_id.hex()[:16]}: {show(e.path)} has a bad "
                f"{'uid' if n.uid == U32 else 'gid'}")
        parent_path = e.path.rpartition(b"/")[0]
        while dirs[-1][0] != parent_path and len(dirs) > 1:
            dirs.pop()
        rel = strip_components(e.path[cut:], strip)  # e.path[cut:] is b"/a/b"
        if rel is None:
            if n.type == DIR:
                dirs.append((e.path, ROOT))  # stripped: its entries go one level up
                if below is not None and e.path.count(b"/") - base.count(b"/") == strip:
                    own_root = own_root and below(e.path)
            continue
        path = rel[1:]
        if seen is not None:
            if path in seen:
                raise UsageError(f"--strip-components {strip} puts two entries at "
                                 f"{show(path)}")
            seen.add(path)
        out.append(Item(path, n, dirs[-1][1], own=below is None or below(e.path)))
        if n.type == DIR:
            dirs.append((e.path, len(out) - 1))
    return out, own_root


def check_links(items: list[Item]) -> None:
    """Refuse hard-link groups whose members disagree on what the one inode holds."""
    first: dict[tuple[int, int], Item] = {}
    for it in items:
        n = it.node
        if n.type != FILE or n.nlink <= 1:
            continue
        f = first.setdefault((n.device, n.inode), it)
        if f is not it and (f.node.size, f.node.content) != (n.size, n.content):
            raise IntegrityError(
                f"hard links /{show(f.path)} and /{show(it.path)} "
                "of one inode disagree about its content")


def link_plan(items: list[Item]) -> None:
    """Mark every file that is a hard link of an earlier one (same device and inode,
    nlink > 1) with ``link_to``; it is then linked, not written."""
    first: dict[tuple[int, int], int] = {}
    for i, it in enumerate(items):
        n = it.node
        if n.type == FILE and n.nlink > 1:
            key = (n.device, n.inode)
            if key in first:
                it.link_to = first[key]
            else:
                first[key] = i


def _matcher(patterns: Iterable[str]) -> GitIgnoreSpec | None:
    pats = [p for p in patterns if p.strip()]
    if not pats:
        return None
    import pathspec  # only when patterns are given: ~20 ms of startup otherwise

    return pathspec.GitIgnoreSpec.from_lines(pats)


def _text(path: bytes, is_dir: bool) -> str:
    return "/" + os.fsdecode(path) + ("/" if is_dir else "")


@dataclass
class Selection:
    """What include/exclude patterns select; ``inside[i]``: item i itself (not only a
    directory leading to a selected entry) is selected."""

    inc: GitIgnoreSpec | None
    exc: GitIgnoreSpec | None
    inside: list[bool] = field(default_factory=list)
    inc_hit: list[bool] = field(default_factory=list)

    def wants(self, parent: int, path: bytes, is_dir: bool) -> bool:
        """Whether an entry at PATH in directory item PARENT (selected itself) would be
        selected by the patterns."""
        text = _text(path, is_dir)
        if self.exc is not None and self.exc.match_file(text):
            return False
        if self.inc is None or (parent != ROOT and self.inc_hit[parent]):
            return True
        return self.inc.match_file(text)


def select(items: list[Item], include: list[str], exclude: list[str],
           ) -> tuple[list[Item], Selection]:
    """The items a restore with these patterns writes (with the directories leading to
    them), in tree order with ``parent`` renumbered, and the selection."""
    inc, exc = _matcher(include), _matcher(exclude)
    sel = Selection(inc, exc)
    if inc is None and exc is None:
        sel.inside = [True] * len(items)
        sel.inc_hit = sel.inside
        return items, sel

    def hits(spec: GitIgnoreSpec | None) -> list[bool]:
        # a path matches when it or any of its ancestors does (parents come first)
        out: list[bool] = []
        for it in items:
            up = it.parent != ROOT and out[it.parent]
            out.append(up or (spec is not None
                              and spec.match_file(_text(it.path, it.node.type == DIR))))
        return out

    inc_hit, exc_hit = hits(inc), hits(exc)
    keep = [False] * len(items)
    inside = [False] * len(items)
    for i in range(len(items)):
        if exc_hit[i] or not (inc is None or inc_hit[i]):
            continue
        inside[i] = True
        j = i
        while j != ROOT and not keep[j]:
            keep[j] = True  # it and the directories leading to it
            j = items[j].parent
    new: dict[int, int] = {ROOT: ROOT}
    out: list[Item] = []
    for i, it in enumerate(items):
        if keep[i]:
            new[i] = len(out)
            it.parent = new[it.parent]
            out.append(it)
            sel.inside.append(inside[i])
            sel.inc_hit.append(inc is None or inc_hit[i])
    return out, sel
