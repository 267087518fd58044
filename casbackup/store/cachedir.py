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
- Opening a remote store again reads its config and key objects from the cache
  (``KnownStore``): ``<root>/locations/<BLAKE3(url)[:32]>`` names the store id last
  opened at that URL, ``<root>/<store id>/open/config`` holds its config bytes and
  ``open/keys/<name>`` copies of its key objects (content-named: a copy is used only if
  it hashes to its name). The config copy is used only when every key object the store
  lists is one of the cached ones (``covers``), which name the store's id: a store created
  anew at the URL lists a key the cache has not seen -- even when the old store's key
  objects were copied in beside it -- and is read afresh, so the remembered open never
  reopens the old store id where a fresh read opens another. And only through the usual
  key check (a key binds the config bytes): a stale or edited copy cannot open anything
  a fresh read would not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3

from ..fields import is_hex
from ..ids import object_name
from .cache import DEFAULT_TREE_LIMIT, write_whole


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


class KnownStore:
    """The config and key objects of the store last opened at one URL, remembered in the
    cache root so that opening it again costs one listing of ``keys/`` instead of reading
    the config and every key object (see the module docstring). Never trusted beyond what
    the store's own key check accepts; any I/O error is a miss."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self._pointer = root / "locations" / blake3.blake3(url.encode()).hexdigest()[:32]
        self.store_id = ""
        self.config: bytes | None = None  # the remembered config bytes, if any
        try:
            sid = self._pointer.read_text().strip()
            if is_hex(sid, 32):
                self.config = (root / sid / "open" / "config").read_bytes()
                self.store_id = sid
        except OSError:
            self.config = None

    def key_names(self) -> set[str]:
        """The names of the key objects held for the remembered store."""
        if not self.store_id:
            return set()
        try:
            return {e.name for e in os.scandir(self.root / self.store_id / "open" / "keys")
                    if is_hex(e.name, 64)}
        except OSError:
            return set()

    def covers(self, listed: list[str]) -> bool:
        """Whether the remembered config may stand for the store's: it lists key objects
        and every one of them is a copy held for the remembered store (a key added since
        -- another store's init, or ``key add`` -- means one fresh read, then it is held)."""
        return bool(listed) and set(listed) <= self.key_names()

    def read_key(self, store_id: str, name: str, fetch: Callable[[], bytes]) -> bytes:
        """Key object NAME of store STORE_ID: the copy if it hashes to NAME, else FETCH()
        (the store's read; kept for next time)."""
        path = self.root / store_id / "open" / "keys" / name
        with contextlib.suppress(OSError):
            data = path.read_bytes()
            if object_name(data) == name:
                return data
        data = fetch()
        write_whole(path, data)
        return data

    def remember(self, store_id: str, config: bytes) -> None:
        """STORE_ID's config bytes (as stored) opened from this URL."""
        if not is_hex(store_id, 32):
            return
        if self.store_id != store_id or self.config != config:
            write_whole(self.root / store_id / "open" / "config", config)
            write_whole(self._pointer, store_id.encode())
            self.store_id, self.config = store_id, config


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
