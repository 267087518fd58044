"""The set of compact index files (``compactindex.py``) that covers the store's index now.

Given the names of the index objects now listed, ``cover`` returns open, checked files
whose source sets are disjoint and together are exactly those names, building what is
missing from the objects themselves (read through ``fetch``: the store's own read path).

Invariants:
- A file is used only if every one of its sources is listed now: a file built from an
  object since superseded or deleted is never read (it might name packs gc deleted).
- The first command after other writers added index objects reads and builds only those
  objects; files are then merged like a binary counter (a file is merged with all smaller
  ones when it is less than twice their sum), so there are O(log n) files and each record
  is rewritten O(log n) times over its life, never the whole store per command.
- A damaged file (truncated, flipped bytes, a wrong set) fails ``CompactFile``'s checks and
  is deleted and rebuilt, never trusted. Files appear by rename only (whole or absent), so
  several processes may build and read the same directory at once; one that finds a file
  gone (another merged it) looks again.
- Files not usable for this listing are deleted once they are ``STALE_AFTER`` seconds
  old (a process with an older listing may still want them).
- Readers apply ``supersedes`` of ``exact`` consolidations (``consolidate.py``): such an
  object names exactly the packs of the objects it supersedes, so a file built from
  those stays valid and the consolidation needs no file of its own when they are all in
  kept files. A gc consolidation (not exact: it drops condemned packs) is never applied
  this way: files built from what it superseded are not used again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .compactindex import (
    SUFFIX,
    CacheDamaged,
    CompactFile,
    columns_from_packs,
    merge_files,
    read_sources,
    write_anonymous,
    write_file,
)
from .pack import PackEntry

PackRows = list[tuple[str, str, int, list[PackEntry]]]


@dataclass(frozen=True, slots=True)
class Fetched:
    """One index object as read: its packs -- as ``rows``, or already as a sorted unnamed
    ``run`` (``indexruns.object_run``; the receiver closes it) -- what it supersedes, and
    whether it names exactly the packs of what it supersedes (an ``exact``
    consolidation)."""

    rows: PackRows = field(default_factory=list)
    supersedes: tuple[str, ...] = ()
    exact: bool = False
    run: CompactFile | None = None

    def as_run(self, name: str, directory: Path | None) -> CompactFile:
        """The object's records as a sorted unnamed file (in DIRECTORY)."""
        if self.run is not None:
            return self.run
        return write_anonymous(columns_from_packs([name], self.rows), directory)


Fetch = Callable[[str], Fetched]  # index object name -> its content; raises to abort
STALE_AFTER = 600.0


def build(directory: Path | None, names: Iterable[str], fetch: Fetch,
          parts: dict[str, CompactFile] | None = None) -> CompactFile:
    """Build (or rebuild) the file of exactly ``names`` from the objects (or from their
    sorted runs in ``parts``, already read). One object at a time is held as Python
    objects; each becomes a sorted run on disk, and the runs are merged in windows
    (``merge_files``), so the build's peak memory follows the largest object, not the
    store."""
    srcs = sorted(set(names))
    have = parts or {}
    if len(srcs) == 1 and srcs[0] not in have:
        got = fetch(srcs[0])
        if got.run is None:
            cols = columns_from_packs(srcs, got.rows)
            if directory is None:
                return write_anonymous(cols)
            return CompactFile(write_file(directory, cols), srcs)
        if directory is None:
            return got.run
        have = {srcs[0]: got.run}
    runs: list[CompactFile] = []
    try:
        for n in srcs:
            runs.append(have.pop(n) if n in have else fetch(n).as_run(n, directory))
        return merge_files(directory, runs)
    finally:
        for r in runs:
            r.close()


def cover(directory: Path | None, names: Iterable[str], fetch: Fetch,
          warn: Callable[[str], None] | None = None) -> tuple[list[CompactFile], set[str]]:
    """Open files covering exactly ``names`` (see the module docstring), and those names
    (the objects now covered). Without a directory (no cache) one unnamed file of this
    process's own is built from the objects."""
    want = frozenset(names)
    if directory is None:
        return ([build(None, want, fetch)] if want else []), set(want)
    for _ in range(5):
        got = _cover_once(directory, want, fetch, warn)
        if got is not None:
            files, covered = got
            return _compact(directory, files), covered
    return [build(directory, want, fetch)], set(want)  # files keep vanishing: our own


def _cover_once(directory: Path, want: frozenset[str], fetch: Fetch,
                warn: Callable[[str], None] | None
                ) -> tuple[list[CompactFile], set[str]] | None:
    found = [(path, srcs) for path in _listing(directory)
             if (srcs := read_sources(path)) is not None and srcs]
    found.sort(key=lambda t: (-len(t[1]), t[0].name))
    taken: set[str] = set()
    out: list[CompactFile] = []

    def take(path: Path, srcs: list[str]) -> bool | None:
        """Open and keep the file; False when damaged (deleted), None when gone."""
        try:
            f = CompactFile(path, srcs)
        except CacheDamaged as e:
            if not path.exists():
                return None  # merged away by another process: look again
            if warn is not None:
                warn(f"local index cache: {e}; rebuilding it")
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        taken.update(srcs)
        out.append(f)
        return True

    for path, srcs in found:
        if (want.issuperset(srcs) and not taken.intersection(srcs)
                and take(path, srcs) is None):
            return None
    parts: dict[str, CompactFile] = {}  # sorted runs on disk, until the build
    try:
        return _build_rest(directory, want, fetch, found, taken, out, parts, take)
    finally:
        for f in parts.values():
            f.close()


def _build_rest(directory: Path, want: frozenset[str], fetch: Fetch,
                found: list[tuple[Path, list[str]]], taken: set[str], out: list[CompactFile],
                parts: dict[str, CompactFile], take: Callable[[Path, list[str]], bool | None]
                ) -> tuple[list[CompactFile], set[str]] | None:
    """The rest of ``_cover_once``: read what no file holds (each object becomes a run in
    PARTS at once), keep files still valid across exact consolidations, build the rest."""
    exact: dict[str, tuple[str, ...]] = {}  # listed exact consolidation -> what it supersedes
    for n in sorted(want - taken):
        got = fetch(n)
        parts[n] = got.as_run(n, directory)
        if got.exact:
            exact[n] = got.supersedes
    # a file built from objects since consolidated ``exact``ly (their packs all named by
    # a listed object) still names only what the listing names: keep it
    sup = {s for ss in exact.values() for s in ss}
    for path, srcs in found:
        if (not want.issuperset(srcs) and sup.issuperset(set(srcs) - want)
                and not taken.intersection(srcs) and take(path, srcs) is None):
            return None
    _drop_stale(found, want | taken)
    # an exact consolidation whose every source is in a file we keep needs no file
    todo = [n for n in want - taken if not (n in exact and taken.issuperset(exact[n]))]
    if todo:
        out.append(build(directory, todo, fetch, parts))
    return out, set(want)


def _drop_stale(found: list[tuple[Path, list[str]]], usable: frozenset[str] | set[str]) -> None:
    """Delete files naming objects no longer listed once they are STALE_AFTER old."""
    now = time.time()
    for path, srcs in found:
        if not usable.issuperset(srcs):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > STALE_AFTER:
                    path.unlink()


def _listing(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))
    except OSError:
        return []


def _compact(directory: Path, files: list[CompactFile]) -> list[CompactFile]:
    """Merge the tail of the files (largest first) while a file is smaller than twice the
    records of all smaller ones together."""
    while True:
        files.sort(key=lambda f: -len(f))
        sizes = [len(f) for f in files]
        tail = next((i for i in range(len(files) - 1)
                     if sizes[i] < 2 * sum(sizes[i + 1:])), None)
        if tail is None:
            return files
        parts = files[tail:]
        try:
            merged = merge_files(directory, parts)
        except CacheDamaged:
            return files  # a lookup will find the damaged block and rebuild that file
        for f in parts:
            f.close()
            if f.path != merged.path:
                with contextlib.suppress(OSError):
                    os.unlink(f.path)
        files = files[:tail] + [merged]
