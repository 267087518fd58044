"""restore's windows: the plan's stream (``restore_plan.Plan.entries``) cut into bounded
pieces that are surveyed, planned and written one at a time.

A window is a list of ``Item`` s with ``parent`` indexes into it: first the *carried*
entries an earlier window made -- the directories still open (those leading to the
window's first new entry, outermost first) and, for a hard link whose file an earlier
window wrote, that file and the directories leading to it -- then the window's new
entries, in stream order, at most ``max_entries`` of them or as many as hold about
``max_blobs`` content blobs (a single larger file is a window of its own).

Invariants:
- What is held between windows is bounded by the tree's depth and its hard-link groups,
  never by its number of entries: the open directories (``Known``: identity, whether it
  failed, its verdict), and per hard-link group (nlink > 1 files only) the first file's
  identity and the directories leading to it.
- A carried directory is reopened, never made: the restorer checks it is still the
  inode an earlier window made or reused (``Known.ident``), so a directory replaced
  between windows is not written into.
- ``closing`` names the window's directories whose every entry has been written once
  this window's are: the walk has left them (the next entry of the stream is not below
  them). Their metadata is applied at the end of this window, deepest first; a
  directory still open gets it in a later window, after its last entry.
- ``record`` must be called after a window is written (it learns the identities the
  next windows check).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..model.tree import DIR, FILE
from .restore_fs import ROOT
from .restore_plan import Item

if TYPE_CHECKING:
    from .restore_write import Restorer

MAX_ENTRIES = 4096  # entries per window: ~6 MiB of plan, survey and writer state
MAX_BLOBS = 16384  # content blobs per window (a blob's plan is ~250 bytes)


@dataclass(slots=True)
class Known:
    """An entry an earlier window made (or found and reused)."""

    ident: tuple[int, int] | None  # (device, inode); None when it failed
    failed: bool
    verdict: int  # the survey's verdict when it was made (``restore_existing``)


@dataclass(slots=True)
class _Source:
    """The first file of a hard-link group, as a window wrote it: its item (path, node)
    and the directories leading to it, outermost first, with what was made of each."""

    chain: list[tuple[Item, Known]]  # (item with parent = its position in chain - 1)


@dataclass
class Window:
    items: list[Item]
    carried: dict[int, Known] = field(default_factory=dict)  # local index -> as made
    closing: list[int] = field(default_factory=list)  # directories done after this one
    first_new: int = 0  # items[first_new:] are this window's own entries
    _open: list[tuple[int, int]] = field(default_factory=list)  # (stream no., index)
    _sources: list[tuple[tuple[int, int], int]] = field(default_factory=list)


def single(items: list[Item]) -> Window:
    """The whole stream as one window (``--delete`` and ``--dry-run``: the survey's name
    sets need every directory's entries at once)."""
    w = Window(items)
    w.closing = [i for i, it in enumerate(items) if it.node.type == DIR]
    return w


class Windows:
    """``for w in Windows(stream): write(w); windows.record(w, restorer)``."""

    def __init__(self, stream: Iterator[Item], max_entries: int = MAX_ENTRIES,
                 max_blobs: int = MAX_BLOBS) -> None:
        self._stream = stream
        self._max_entries = max(1, max_entries)
        self._max_blobs = max(1, max_blobs)
        self._next: tuple[int, Item] | None = None  # read ahead: the next window's first
        self._num = 0  # stream numbers handed out
        self._open: list[tuple[int, Item, Known | None]] = []  # (stream no., item, made)
        self._sources: dict[tuple[int, int], _Source | None] = {}  # None: written now

    def _pull(self) -> tuple[int, Item] | None:
        if self._next is not None:
            nxt, self._next = self._next, None
            return nxt
        it = next(self._stream, None)
        if it is None:
            return None
        self._num += 1
        return self._num - 1, it

    def _leave(self, parent: int) -> list[tuple[int, Item, Known | None]]:
        """Pop the open directories the walk has left before an entry in PARENT."""
        out = []
        while self._open and self._open[-1][0] != parent:
            out.append(self._open.pop())
        return out

    def __iter__(self) -> Iterator[Window]:
        while True:
            first = self._pull()
            if first is None:
                return
            self._leave(first[1].parent)  # closed by the previous window already
            yield self._window(first)

    def _window(self, first: tuple[int, Item]) -> Window:
        items: list[Item] = []
        carried: dict[int, Known] = {}
        local: dict[int, int] = {ROOT: ROOT}  # stream number -> index in the window
        for num, it, known in self._open:  # the directories still open, outermost first
            assert known is not None
            local[num] = len(items)
            carried[len(items)] = known
            items.append(Item(it.path, it.node, local[it.parent], own=it.own,
                              inside=it.inside, inc_hit=it.inc_hit))
        new: list[tuple[int, Item]] = []
        blobs = 0
        nxt: tuple[int, Item] | None = first
        closing: list[int] = []
        while nxt is not None:
            num, it = nxt
            closed = self._leave(it.parent)
            closing += [n for n, _, _ in closed]
            new.append(nxt)
            if it.node.type == DIR:
                self._open.append((num, it, None))
            blobs += len(it.node.content or ()) if it.node.type == FILE else 0
            if len(new) >= self._max_entries or blobs >= self._max_blobs:
                break
            nxt = self._pull()
        else:
            closing += [n for n, _, _ in self._leave(ROOT)]  # the end: everything closes
        if nxt is not None:
            self._next = self._pull()
            if self._next is None:
                closing += [n for n, _, _ in self._leave(ROOT)]
            else:
                closing += [n for n, _, _ in self._leave(self._next[1].parent)]
        # hard links to a file an earlier window wrote: that file and its directories
        paths = {it.path: i for i, it in enumerate(items)}
        links: dict[int, int] = {}  # stream number of a link -> index of its file
        sources: list[tuple[tuple[int, int], int]] = []
        for num, it in new:
            n = it.node
            if n.type != FILE or n.nlink <= 1:
                continue
            key = (n.device, n.inode)
            if key not in self._sources:
                self._sources[key] = None
                sources.append((key, num))
                continue
            src = self._sources[key]
            if src is None:
                links[num] = -1 - num  # resolved below: the first file is in this window
                continue
            at = ROOT
            for cit, known in src.chain:
                if cit.path not in paths:
                    paths[cit.path] = len(items)
                    carried[len(items)] = known
                    items.append(Item(cit.path, cit.node, at, own=cit.own))
                at = paths[cit.path]
            links[num] = at
        first_new = len(items)
        firsts: dict[tuple[int, int], int] = {}
        for num, it in new:
            local[num] = len(items)
            item = Item(it.path, it.node, local[it.parent], own=it.own, inside=it.inside,
                        inc_hit=it.inc_hit)
            n = it.node
            if num in links:
                to = links[num]
                item.link_to = to if to >= 0 else firsts[(n.device, n.inode)]
            elif n.type == FILE and n.nlink > 1:
                firsts.setdefault((n.device, n.inode), len(items))
            items.append(item)
        w = Window(items, carried, [local[n] for n in closing], first_new)
        w._open = [(num, local[num]) for num, _, _ in self._open]
        w._sources = [(key, local[num]) for key, num in sources]
        return w

    def record(self, w: Window, r: Restorer) -> None:
        """After W was written by R: what the next windows must know of what it made."""
        made = {num: r.known(i) for num, i in w._open}
        self._open = [(num, it, made.get(num, known)) for num, it, known in self._open]
        for key, i in w._sources:
            chain: list[tuple[Item, Known]] = []
            j = i
            while j != ROOT:
                it = w.items[j]
                known = w.carried.get(j) or r.known(j)
                chain.append((Item(it.path, it.node, own=it.own), known))
                j = it.parent
            chain.reverse()
            self._sources[key] = _Source(chain)

