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
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .compactindex import (
    SUFFIX,
    CacheDamaged,
    Columns,
    CompactFile,
    columns_from_packs,
    merge,
    read_sources,
    write_file,
)
from .pack import PackEntry

PackRows = list[tuple[str, str, int, list[PackEntry]]]
Fetch = Callable[[str], PackRows]  # index object name -> its packs; raises to abort
STALE_AFTER = 600.0


def build(directory: Path, names: Iterable[str], fetch: Fetch) -> CompactFile:
    """Build (or rebuild) the file of exactly ``names`` from the objects."""
    srcs = sorted(set(names))
    rows: PackRows = []
    for n in srcs:
        rows.extend(fetch(n))
    path = write_file(directory, columns_from_packs(srcs, rows))
    return CompactFile(path, srcs)


def cover(directory: Path, names: Iterable[str], fetch: Fetch,
          warn: Callable[[str], None] | None = None) -> list[CompactFile]:
    """Open files covering exactly ``names`` (see the module docstring)."""
    want = frozenset(names)
    for _ in range(5):
        files = _open_existing(directory, want, warn)
        if files is not None:
            break
    else:
        files = []
    have = {s for f in files for s in f.sources}
    missing = want - have
    if missing:
        files.append(build(directory, missing, fetch))
    return _compact(directory, files)


def _open_existing(directory: Path, want: frozenset[str],
                   warn: Callable[[str], None] | None) -> list[CompactFile] | None:
    """The largest disjoint usable files, opened; None when one vanished meanwhile."""
    found: list[tuple[int, Path, list[str]]] = []
    now = time.time()
    for path in _listing(directory):
        srcs = read_sources(path)
        if srcs is not None and srcs and want.issuperset(srcs):
            found.append((len(srcs), path, srcs))
        else:
            with contextlib.suppress(OSError):
                if srcs is None or now - path.stat().st_mtime > STALE_AFTER:
                    path.unlink()
    found.sort(key=lambda t: (-t[0], t[1].name))
    taken: set[str] = set()
    out: list[CompactFile] = []
    for _n, path, srcs in found:
        if taken.intersection(srcs):
            continue
        try:
            f = CompactFile(path, srcs)
        except CacheDamaged as e:
            if not path.exists():  # merged away by another process: look again
                for g in out:
                    g.close()
                return None
            if warn is not None:
                warn(f"local index cache: {e}; rebuilding it")
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        taken.update(srcs)
        out.append(f)
    return out


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
            cols: list[Columns] = [f.columns() for f in parts]
        except CacheDamaged:
            return files  # a lookup will find the damaged block and rebuild that file
        merged = CompactFile(write_file(directory, merge(cols)),
                             [s for f in parts for s in f.sources])
        for f in parts:
            f.close()
            if f.path != merged.path:
                with contextlib.suppress(OSError):
                    os.unlink(f.path)
        files = files[:tail] + [merged]
