"""restore's plan: the snapshot's selected entries in tree order, as a stream.

Invariants:
- The entries come from the one tree walker (``treewalk.walk``, iterative: any depth),
  each tree read once per walk and not kept in the store's tree cache; every entry's
  parent comes before it (``Item.parent`` is its number in the stream, ``ROOT`` for the
  target itself). A walk holds the directories leading to the current entry, the
  hard-link groups (nlink > 1 files only) and with ``--strip-components`` the top-level
  names -- never something per entry, so a restore's memory does not grow with the
  number of files (``restore_window`` cuts the stream into bounded windows). Between
  the first walk and the next, the plan holds the first walk's first decoded trees,
  at most ``keep`` bytes of estimated size (``KEEP_BYTES``).
- Every tree is validated once per plan: a walk after one that ended decodes the trees
  it did not keep with ``Tree.decode_again`` (the same ids, so the same checked bytes).
- Every node was validated by the store's strict decoder (``model.tree``: safe, strictly
  sorted, unique names; each field of its type and in range; a directory has a subtree,
  a symlink a non-empty target). The plan checks only what the decoder cannot know:
  uid/gid 2^32-1 (``chown``'s "unchanged"), hard-link groups (same device and inode)
  whose members disagree about their content, and ``--strip-components`` mapping two
  entries to one path. Anything else is refused with ``IntegrityError`` / ``UsageError``;
  restore walks the whole stream once (checking only) before the target is touched.
- An item holds its node and one ``path`` (bytes, ``/``-joined below the target), not a
  tuple of components.
- Include/exclude matching costs one match per entry at any depth (an entry is selected
  when it or an ancestor matches: the ancestors' answers are reused, not recomputed).
  ``Selection.wants`` answers the same question for a path that is not in the snapshot
  (what ``--delete`` may remove).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import IntegrityError, UsageError
from ..model.fields import U32
from ..model.tree import DIR, FILE, Node, Tree
from ..store import Store
from .restore_fs import ROOT, show
from .strip import strip_components
from .treewalk import walk as tree_walk

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec


# Decoded trees the checking walk keeps for the writing walk: at most this many bytes of
# estimated size, KEEP_FACTOR times a tree's plaintext (measured: a decoded node of
# the small-file benchmark takes 3.8 times its msgpack bytes; a node with many content
# ids less). 16 MiB holds ~17,000 small files' nodes, all of the 1 GB corpus's 20,005.
KEEP_BYTES = 16 << 20
KEEP_FACTOR = 5


@dataclass(slots=True)
class Item:
    path: bytes  # below the target, b"/"-joined (b"a/b")
    node: Node
    parent: int = ROOT  # index of the directory item holding this one
    link_to: int | None = None  # index of the item this one is a hard link of
    own: bool = True  # at or below a backed-up path (``--delete`` may act inside it)
    inside: bool = True  # selected itself (not only a directory leading to a selection)
    inc_hit: bool = True  # it or an ancestor matches --include (or there is none)

    @property
    def depth(self) -> int:
        return self.path.count(b"/")


@dataclass(slots=True)
class _Dir:
    path: bytes  # its snapshot path
    num: int  # its number in the stream, ROOT when stripped (or not yet yielded)
    item: Item | None  # not yet yielded (leads only to entries not seen yet)
    inc_hit: bool
    exc_hit: bool
    own: bool = False  # at or below a backed-up path (so is everything below it)


class _Links:
    """Hard-link groups (same device and inode, nlink > 1: only those files are held)
    whose members must agree on what the one inode holds."""

    def __init__(self) -> None:
        self.first: dict[tuple[int, int], tuple[bytes, Node]] = {}

    def check(self, n: Node, path: bytes) -> None:
        f = self.first.setdefault((n.device, n.inode), (path, n))
        if f[1] is not n and (f[1].size, f[1].content) != (n.size, n.content):
            raise IntegrityError(
                f"hard links {show(f[0])} and {show(path)} "
                "of one inode disagree about its content")


class Plan:
    """The selected entries below one tree, streamed: ``entries()`` walks the trees anew
    each time it is called (a restore calls it twice: a checking pass, then the writes)
    and yields each selected ``Item`` with ``parent`` the number (0, 1, ...) of its
    directory in the same stream, every parent before its entries; a directory that is
    not selected itself but leads to selected entries is yielded just before the first
    of them. A walk holds the directories leading to the current entry, the hard-link
    groups (nlink > 1 files only) and, with ``strip``, the top-level names; nothing per
    entry. ``own_root`` is final once a walk has ended.

    Each tree is decoded (and validated) once: the first walk keeps the decoded trees it
    meets first, in walk order, while their estimated size (``KEEP_FACTOR`` times their
    plaintext) fits in ``keep`` bytes, and a later walk takes each kept tree out as it
    reaches it (so they are freed as the writes go) and decodes the others with
    ``Tree.decode_again``, without validating them again: a later walk is over the same
    trees (the same root, every subtree descended into), each fetched by its id, which
    the store checks the bytes against, and every one of them passed the strict decoder
    in the first walk (which ran to its end, else the restore stopped there)."""

    def __init__(self, store: Store, tree_id: bytes | None, *, base: bytes = b"",
                 strip: int = 0, below: Callable[[bytes], bool] | None = None,
                 include: list[str] | None = None, exclude: list[str] | None = None,
                 one: Node | None = None, keep: int = KEEP_BYTES) -> None:
        self.store = store
        self._kept: dict[bytes, Tree] = {}  # the first walk's first trees, for the next
        self._keep = keep  # bytes of estimated decoded size still free for them
        self._walked = False  # a walk ended: every tree below tree_id decoded fine
        self.tree_id = tree_id  # None: the one entry ONE, at snapshot path BASE
        self.base = b"" if base == b"/" else base
        self.strip = strip
        self.below = below
        self.inc, self.exc = _matcher(include or []), _matcher(exclude or [])
        self.one = one
        self.own_root = False
        # --include patterns no entry matched yet (negations and blanks are not counted):
        # final once a walk has ended; each is tried alone only while it is unmatched
        self.unmatched: dict[str, GitIgnoreSpec | None] = {
            p: None for p in include or [] if p.strip() and not p.lstrip().startswith(("!", "#"))}
        self.counted = len(self.unmatched)  # the --include patterns that can match

    def _hit(self, text: str) -> None:
        """TEXT is selected by ``--include``: which unmatched patterns match it alone."""
        for pat, spec in list(self.unmatched.items()):
            if spec is None:
                spec = self.unmatched[pat] = _matcher([pat])
            if spec is not None and spec.match_file(text):
                del self.unmatched[pat]

    def selection(self, items: list[Item]) -> Selection:
        """The patterns and what they select of ITEMS (a window of the stream)."""
        return Selection(self.inc, self.exc, [it.inside for it in items],
                         [it.inc_hit for it in items])

    def entries(self) -> Iterator[Item]:
        if self.one is not None:
            yield from self._one(self.one)
            return
        assert self.tree_id is not None
        below, inc, exc, base, strip = self.below, self.inc, self.exc, self.base, self.strip
        patterns = inc is not None or exc is not None
        links = _Links()
        dirs: list[_Dir] = [_Dir(base, ROOT, None, False, False)]  # leading to an entry
        pending = 0  # of those, directories not yet yielded
        count = 0
        seen: set[bytes] | None = set() if strip else None
        cut = len(base)
        own_root = below is None or (strip == 0 and below(base or b"/"))
        dirs[0].own = below is None or below(base or b"/")
        where = {self.tree_id: base or b"/"}  # a tree about to be loaded -> its path
        load = self._loader(where)

        for e in tree_walk(load, self.tree_id, path=base):
            n = e.node
            is_dir = n.type == DIR
            if is_dir and n.subtree is not None:
                where[n.subtree] = e.path
            if n.uid == U32 or n.gid == U32:
                raise IntegrityError(
                    f"tree {e.tree_id.hex()[:16]}: {show(e.path)} has a bad "
                    f"{'uid' if n.uid == U32 else 'gid'}")
            if n.type == FILE and n.nlink > 1:
                links.check(n, e.path)
            parent_path = e.path.rpartition(b"/")[0]
            while dirs[-1].path != parent_path and len(dirs) > 1:
                if dirs.pop().item is not None:
                    pending -= 1
            own = dirs[-1].own or below is None or below(e.path)  # below an own directory
            rel = strip_components(e.path[cut:], strip)  # e.path[cut:] is b"/a/b"
            if rel is None:
                if is_dir:
                    dirs.append(_Dir(e.path, ROOT, None, False, False, own))  # one level up
                    if below is not None and e.path.count(b"/") - base.count(b"/") == strip:
                        own_root = own_root and below(e.path)
                continue
            path = rel[1:]
            if seen is not None and b"/" not in path:
                # two entries stripped to one deeper path have two top-level ancestors
                # stripped to one name: checking the top level finds every clash
                if path in seen:
                    raise UsageError(f"--strip-components {strip} puts two entries at "
                                     f"{show(path)}")
                seen.add(path)
            up = dirs[-1]
            inc_hit = exc_hit = False
            if patterns:  # an entry matches when it or an ancestor does
                text = _text(path, is_dir)
                inc_hit = up.inc_hit or (inc is not None and inc.match_file(text))
                if inc_hit and self.unmatched:
                    self._hit(text)
                exc_hit = up.exc_hit or (exc is not None and exc.match_file(text))
            inside = not exc_hit and (inc is None or inc_hit)
            it = Item(path, n, ROOT, own=own, inside=inside, inc_hit=inc is None or inc_hit)
            num = ROOT
            if inside:
                if pending:  # the directories leading to it, not yielded yet, first
                    for k in range(1, len(dirs)):
                        d = dirs[k]
                        if d.item is not None:
                            d.item.parent, d.num = dirs[k - 1].num, count
                            yield d.item
                            d.item = None
                            count += 1
                    pending = 0
                    up = dirs[-1]
                it.parent = up.num
                yield it
                num, count = count, count + 1
            if is_dir:
                dirs.append(_Dir(e.path, num, None if inside else it, inc_hit, exc_hit, own))
                pending += not inside
        self.own_root = own_root
        self._walked = True

    def _loader(self, where: dict[bytes, bytes]) -> Callable[[bytes], Tree]:
        """This walk's tree loader (see the class docstring): the first walk decodes and
        validates every tree, keeping the first ones; a later one takes those out and
        decodes the rest again unvalidated. An error names the tree's path (WHERE)."""
        fetch, kept, again = self.store.tree_blob, self._kept, self._walked

        def load(tid: bytes) -> Tree:
            try:
                if again:
                    t = kept.pop(tid, None)
                    return t if t is not None else Tree.decode_again(fetch(tid))
                t = kept.get(tid)  # a tree met twice (identical directories)
                if t is None:
                    data = fetch(tid)
                    t = Tree.decode(data, tid)
                    cost = KEEP_FACTOR * len(data)
                    if cost <= self._keep:
                        kept[tid] = t
                        self._keep -= cost
                    else:
                        self._keep = 0  # keep a prefix of the walk: freed first
                return t
            except IntegrityError as err:
                raise IntegrityError(f"{err} (at {show(where.get(tid, b'?'))})") from None
            finally:
                where.pop(tid, None)
        return load

    @property
    def kept(self) -> int:
        """Decoded trees held for the next walk (tests)."""
        return len(self._kept)

    def _one(self, n: Node) -> Iterator[Item]:
        """``SNAP:PATH`` naming one entry that is not a directory."""
        inc, exc = self.inc, self.exc
        text = _text(n.name, n.type == DIR)
        if exc is not None and exc.match_file(text):
            return
        if inc is None or inc.match_file(text):
            if self.unmatched:
                self._hit(text)
            yield Item(n.name, n, own=self.below is None or self.below(self.base))


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
