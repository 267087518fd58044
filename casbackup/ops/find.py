"""find: which snapshots hold entries matching glob patterns (restic's ``find``).

Patterns (restic's semantics): a pattern without ``/`` matches an entry's name; one with
``/`` matches its whole path, from the root when it starts with ``/``, else its trailing
components (``work/*.c`` matches ``/home/me/work/x.c``). ``*`` and ``?`` never match a
``/``, ``[...]`` is a class (``[!...]`` negated), ``\\`` escapes, and a ``**`` component
matches any number of components. Directories, symlinks and special files match too.

How (the cost is the store's distinct trees, not snapshots x entries): one ``treewalk.fold``
memo is shared by every snapshot searched, so each distinct tree is loaded and scanned
once. A tree's value is the entries below it whose name matches the *last* component of
some pattern (and whose mtime is in range): a path match implies that, and it does not
depend on where the tree sits. Each snapshot's candidates are then checked against the
full patterns with their real paths.

Invariants: it runs under a shared lock (as stats and diff); only tree blobs are read
(through ``treewalk.uncached``: the memo is the cache); a tree that cannot be read is
reported in ``FindResult.errors`` (naming it) and counted as holding nothing, and the
search goes on; paths are ``/``-joined validated names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import CasError, UsageError
from ..model.snapshot import Snapshot
from ..model.tree import DIR, Node, Tree
from ..store import Store
from ..store.locks import shared_lock
from .snapsel import locate
from .treewalk import fold, uncached

_STAR = object()  # a "**" component


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    parts: tuple[re.Pattern[str] | object, ...]  # component regexes, _STAR for "**"
    whole_path: bool  # the pattern has a "/": check the full path, not only the name

    @property
    def last(self) -> re.Pattern[str] | None:
        p = self.parts[-1]
        return p if isinstance(p, re.Pattern) else None

    def matches_path(self, path: str) -> bool:
        return _match_parts(self.parts, [c for c in path.split("/") if c])


def _component(glob: str) -> str:
    """A regex for one path component's glob (no ``/`` inside)."""
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i < n:
            out.append(re.escape(glob[i]))
            i += 1
        elif c == "[":
            j = i + (glob[i:i + 1] in ("!", "^"))
            j = glob.find("]", j + (glob[j:j + 1] == "]"))
            if j < 0:
                out.append(re.escape(c))
                continue
            body = glob[i:j].replace("\\", "\\\\").replace("[", "\\[")
            out.append("[^/" + body[1:] + "]" if body[:1] in ("!", "^") else "[" + body + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
    return "".join(out)


def compile_pattern(text: str, ignore_case: bool = False) -> Pattern:
    comps = [c for c in text.split("/") if c]
    if not comps:
        raise UsageError(f"find pattern {text!r} names no entry")
    flags = re.IGNORECASE if ignore_case else 0
    try:
        parts: list[re.Pattern[str] | object] = [
            _STAR if c == "**" else re.compile(_component(c), flags) for c in comps]
    except re.error as e:
        raise UsageError(f"find pattern {text}: {e}") from None
    if not text.startswith("/"):
        parts.insert(0, _STAR)
    return Pattern(text, tuple(parts), "/" in text.rstrip("/"))


def _match_parts(parts: tuple[re.Pattern[str] | object, ...], comps: list[str]) -> bool:
    """Whether the components COMPS match the pattern PARTS (an NFA over positions)."""
    def closure(states: Iterable[int]) -> set[int]:
        out = set()
        for i in states:
            out.add(i)
            while i < len(parts) and parts[i] is _STAR:
                i += 1
                out.add(i)
        return out

    states = closure({0})
    for c in comps:
        nxt = set()
        for i in states:
            if i == len(parts):
                continue
            p = parts[i]
            if p is _STAR:
                nxt.add(i)
            elif isinstance(p, re.Pattern) and p.fullmatch(c):
                nxt.add(i + 1)
        states = closure(nxt)
        if not states:
            return False
    return len(parts) in states


@dataclass(frozen=True, slots=True)
class Match:
    path: bytes
    node: Node


@dataclass(slots=True)
class SnapshotMatches:
    snapshot: Snapshot
    matches: list[Match]


@dataclass(slots=True)
class FindResult:
    groups: list[SnapshotMatches] = field(default_factory=list)  # snapshots with matches
    searched: int = 0  # snapshots searched
    trees_loaded: int = 0
    errors: list[str] = field(default_factory=list)  # trees that could not be read


Candidates = tuple[tuple[bytes, Node], ...]  # (path below the tree, node), walk order


class _Search:
    def __init__(self, st: Store, patterns: list[Pattern],
                 newest_ns: int | None, oldest_ns: int | None) -> None:
        self.patterns = patterns
        self.lasts = [p.last for p in patterns]
        self.newest, self.oldest = newest_ns, oldest_ns
        self.memo: dict[bytes, Candidates] = {}
        self.result = FindResult()
        read = uncached(st)

        def load(tid: bytes) -> Tree:
            self.result.trees_loaded += 1
            return read(tid)
        self.load = load

    def _keep(self, n: Node) -> bool:
        if self.newest is not None and n.mtime_ns > self.newest:
            return False
        if self.oldest is not None and n.mtime_ns < self.oldest:
            return False
        name = os.fsdecode(n.name)
        return any(r is None or r.fullmatch(name) for r in self.lasts)

    def _total(self, tid: bytes, tree: Tree, memo: Mapping[bytes, Candidates]) -> Candidates:
        out: list[tuple[bytes, Node]] = []
        for n in tree.nodes:
            if self._keep(n):
                out.append((n.name, n))
            if n.type == DIR and n.subtree is not None:
                out.extend((n.name + b"/" + p, m) for p, m in memo[n.subtree])
        return tuple(out)

    def _lost(self, tid: bytes, e: CasError) -> Candidates:
        self.result.errors.append(f"tree {tid.hex()[:16]} could not be read: {e}")
        return ()

    def search(self, snap: Snapshot, sub: str | None) -> None:
        self.result.searched += 1
        root, base = snap.tree, b""
        if sub is not None:
            loc = locate(self.load, snap, sub)
            if loc.tree is None:
                raise UsageError(f"{os.fsdecode(loc.path)} is not a directory in snapshot "
                                 f"{snap.id[:8]}")
            root, base = loc.tree, loc.path.rstrip(b"/")
        cands = fold(self.load, root, self._total, self.memo, on_error=self._lost)
        found = [Match(base + b"/" + rel, node) for rel, node in cands
                 if any(self._matches(p, node, base + b"/" + rel) for p in self.patterns)]
        if found:
            self.result.groups.append(SnapshotMatches(snap, found))

    @staticmethod
    def _matches(p: Pattern, node: Node, path: bytes) -> bool:
        last = p.last
        if last is not None and not last.fullmatch(os.fsdecode(node.name)):
            return False
        return not p.whole_path or p.matches_path(os.fsdecode(path))


def find(st: Store, patterns: list[str], targets: list[tuple[Snapshot, str | None]], *,
         ignore_case: bool = False, newest_ns: int | None = None,
         oldest_ns: int | None = None) -> FindResult:
    """The entries matching any of PATTERNS in each (snapshot, sub-path) of TARGETS."""
    s = _Search(st, [compile_pattern(p, ignore_case) for p in patterns], newest_ns, oldest_ns)
    with shared_lock(st, "find", read_only=True):
        for snap, sub in targets:
            s.search(snap, sub)
    return s.result
