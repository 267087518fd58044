"""Where a store's local cache lives: ``$XDG_CACHE_HOME/casbackup/<store id>``.

The cache holds only what is derived from, or a copy of, the store's immutable,
content-addressed objects (index objects, snapshots, tree blobs, and the compact index
built from index objects), so an entry can never be stale, only missing or damaged; every
reader checks an entry against its content-addressed name before trusting it and
refetches or rebuilds it otherwise. The one exception is the backup's directory cache
(``dirs/``, ops/dircache.py), derived from the source's lstat as well and checked against
it. The cache is never the truth and may be deleted at any time.

Invariants:
- ``CacheSettings.directory is None`` means no cache: nothing is written outside the
  store (the CLI's ``--no-cache``).
- A store's cache directory is ``<root>/<store id>``, where the store id is the config's
  32 hex digits (checked when the config is decoded), so a hostile config cannot steer
  it elsewhere; it is created mode 0700 (it may hold decrypted tree blobs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..fields import is_hex
from .cache import DEFAULT_TREE_LIMIT


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The cache root for every store a process opens, or None for no cache, and the
    bytes of tree blobs each store's cache keeps (store/cache.py evicts beyond it)."""

    directory: Path | None
    tree_limit: int = DEFAULT_TREE_LIMIT

    @classmethod
    def default(cls) -> CacheSettings:
        """``$CASBACKUP_CACHE_DIR``, else ``$XDG_CACHE_HOME/casbackup``, else
        ``~/.cache/casbackup`` (the XDG base-directory rule)."""
        explicit = os.environ.get("CASBACKUP_CACHE_DIR")
        if explicit:
            return cls(Path(explicit))
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
        return cls(base / "casbackup")

    @classmethod
    def disabled(cls) -> CacheSettings:
        return cls(None)


def store_cache_dir(settings: CacheSettings | None, store_id: str) -> Path | None:
    """The cache directory of the store STORE_ID (created, mode 0700), or None when
    caching is off or the directory cannot be made (a read-only home: the command then
    runs without a cache rather than failing)."""
    if settings is None or settings.directory is None:
        return None
    if not is_hex(store_id, 32):
        raise ValueError(f"not a store id: {store_id!r}")
    path = settings.directory / store_id
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return path


@dataclass(frozen=True, slots=True)
class StoreCache:
    """One store's cache directory as found under a cache root (for ``casbackup cache``)."""

    store_id: str
    path: Path
    files: int
    size: int
    last_used: float  # the newest mtime of anything in it (a tree hit touches its entry)


def list_store_caches(settings: CacheSettings) -> list[StoreCache]:
    """Every store cache under the root, oldest use first; entries that are not a store
    id's directory (a hand-made file, another tool's) are left alone."""
    if settings.directory is None:
        return []
    try:
        entries = list(os.scandir(settings.directory))
    except OSError:
        return []
    out = []
    for e in entries:
        if not is_hex(e.name, 32) or not e.is_dir(follow_symlinks=False):
            continue
        files = size = 0
        last = e.stat(follow_symlinks=False).st_mtime
        for dirpath, _dirs, names in os.walk(e.path):
            for n in names:
                try:
                    st = os.lstat(os.path.join(dirpath, n))
                except OSError:
                    continue
                files += 1
                size += st.st_size
                last = max(last, st.st_mtime)
        out.append(StoreCache(e.name, Path(e.path), files, size, last))
    out.sort(key=lambda c: c.last_used)
    return out


def remove_store_cache(cache: StoreCache) -> None:
    """Delete one store's cache (only ever a copy: the next command refetches)."""
    import shutil

    shutil.rmtree(cache.path, ignore_errors=True)
