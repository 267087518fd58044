"""The local cache of a remote store's immutable objects: index objects, snapshot
objects and tree blobs, under ``Store.cache_dir`` (store/cachedir.py).

Layout (inside ``<cache root>/<store id>/``; other subdirectories belong to others)::

    objects/index/<name>       a copy of ``index/<name>``, byte for byte
    objects/snapshots/<name>   a copy of ``snapshots/<name>``
    trees/<ab>/<blob id hex>   ``raw length (8 bytes LE) ‖ sealed tree blob`` (as in its pack)

Invariants:
- Every entry is keyed by a content-addressed name, so it can never be stale, only
  missing or damaged. Nothing is returned without its check: an object copy must hash
  to its name (``ids.object_name``); a tree entry is returned sealed and the Store
  unseals it with ``Codec.unseal_blob``, which checks the keyed BlobId (and the AEAD tag)
  -- tree blobs stay encrypted at rest, as in the store. A failed check deletes the
  entry (``drop``) and the caller refetches from the store.
- Writes go to a temporary name in the same directory and are renamed into place, so a
  reader (any process) sees a whole entry or none; no locks are needed because two
  writers of one name write the same bytes. Temporary files a crash left behind are
  removed by ``trim`` once an hour old.
- Tree entries are bounded: ``trim`` evicts the least recently used ones (a hit touches
  the entry's mtime) until they take at most ``tree_limit`` bytes. Ages and touches use
  the filesystem's clock (``_now``), so processes with skewed clocks share one order.
  Object copies are not evicted by size; ``retain`` drops those the store no longer
  lists (forgotten snapshots, consolidated index objects).
- Cache I/O errors never fail a command: a read that fails is a miss, a write that fails
  is skipped.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..ids import object_name
from .layout import INDEX_DIR, SNAPSHOTS_DIR

PREFIXES = (INDEX_DIR, SNAPSHOTS_DIR)  # the object kinds that are cached
DEFAULT_TREE_LIMIT = 1 << 30  # bytes of tree entries kept (1 GiB)
_TEMP = ".tmp-"
_TEMP_AGE = 3600.0  # seconds before a temporary file is taken for a crash's leftover
MAX_TREE = 1 << 32  # a larger raw length in an entry's header is damage
_LEN = 8  # bytes of the raw-length header of a tree entry


@dataclass(slots=True)
class CacheStats:
    """What the cache did in this process (for tests and ``cache`` output)."""

    hits: int = 0
    misses: int = 0
    damaged: int = 0
    stored: int = 0
    evicted: int = 0


class ObjectCache:
    """One store's cache directory. Thread-safe: entries are whole files."""

    def __init__(self, root: Path, tree_limit: int = DEFAULT_TREE_LIMIT) -> None:
        self.root = root
        self.tree_limit = tree_limit
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._added = 0  # tree bytes this process wrote (trim runs only if some)
        self._skew: float | None = None  # the filesystem's clock minus ours (_now)

    # ----- object copies ------------------------------------------------------------

    def _object_path(self, prefix: str, name: str) -> Path:
        return self.root / "objects" / prefix.rstrip("/") / name

    def get_object(self, prefix: str, name: str) -> bytes | None:
        """The stored bytes of object PREFIX+NAME if cached and they hash to NAME."""
        path = self._object_path(prefix, name)
        data = self._read(path)
        if data is None:
            return None
        if object_name(data) != name:
            self.drop_object(prefix, name)
            return None
        self._count(hits=1)
        return data

    def put_object(self, prefix: str, name: str, data: bytes | memoryview) -> None:
        """Keep a copy of object PREFIX+NAME (DATA, already checked against NAME)."""
        self._write(self._object_path(prefix, name), data)

    def drop_object(self, prefix: str, name: str) -> None:
        self._count(damaged=1)
        with contextlib.suppress(OSError):
            self._object_path(prefix, name).unlink()

    def retain(self, prefix: str, names: Iterable[str]) -> int:
        """Delete the copies of PREFIX objects not in NAMES (the store's listing: what
        it no longer holds); returns how many went. A copy written by another process
        after that listing may go too: it is only refetched."""
        keep = set(names)
        d = self.root / "objects" / prefix.rstrip("/")
        n = 0
        try:
            entries = list(os.scandir(d))
        except OSError:
            return 0
        for e in entries:
            if e.name.startswith(_TEMP) or e.name in keep:
                continue
            with contextlib.suppress(OSError):
                os.unlink(e.path)
                n += 1
        return n

    # ----- tree blobs ---------------------------------------------------------------

    def _tree_path(self, blob_id: bytes) -> Path:
        h = blob_id.hex()
        return self.root / "trees" / h[:2] / h

    def get_tree(self, blob_id: bytes) -> tuple[int, bytes] | None:
        """(raw length, sealed bytes) of tree blob BLOB_ID if cached, unchecked: the
        caller unseals with the BlobId check and calls ``drop_tree`` if it fails."""
        path = self._tree_path(blob_id)
        data = self._read(path)
        if data is None:
            return None
        raw_length = int.from_bytes(data[:_LEN], "little")
        if len(data) <= _LEN or raw_length > MAX_TREE:
            self._count(hits=1)
            self.drop_tree(blob_id)
            return None
        with contextlib.suppress(OSError):
            t = self._now()
            os.utime(path, (t, t))  # most recently used
        self._count(hits=1)
        return raw_length, data[_LEN:]

    def put_tree(self, blob_id: bytes, raw_length: int, sealed: bytes | memoryview) -> None:
        self._write(self._tree_path(blob_id), raw_length.to_bytes(_LEN, "little"), sealed)
        with self._lock:
            self._added += _LEN + len(sealed)

    def drop_tree(self, blob_id: bytes) -> None:
        """Forget a tree entry that failed its check (it is refetched)."""
        self._count(damaged=1, hits=-1)
        with contextlib.suppress(OSError):
            self._tree_path(blob_id).unlink()

    # ----- size bound ---------------------------------------------------------------

    def _now(self) -> float:
        """Now by the clock that stamps the cache's files (a new file's mtime), not this
        process's: a process whose clock is hours off (or faked) must neither age other
        writers' fresh temporary files past ``_TEMP_AGE`` nor touch its hits into the
        past or future of the LRU order. Measured once per cache."""
        if self._skew is None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=self.root, prefix=_TEMP) as f:
                    self._skew = os.fstat(f.fileno()).st_mtime - time.time()
            except OSError:
                self._skew = 0.0
        return time.time() + self._skew

    def trim(self, *, force: bool = False) -> int:
        """Evict least recently used tree entries until they take at most
        ``tree_limit`` bytes, and remove stale temporary files. Runs only if this
        process added tree entries (or FORCE): it stats every tree entry. Returns the
        number of entries evicted."""
        with self._lock:
            if not force and not self._added:
                return 0
            self._added = 0
        now = self._now()
        entries: list[tuple[float, int, str]] = []
        total = 0
        for sub in _scandir(self.root / "trees"):
            for e in _scandir(Path(sub.path)):
                try:
                    st = e.stat()
                except OSError:
                    continue
                if e.name.startswith(_TEMP):
                    if now - st.st_mtime > _TEMP_AGE:
                        with contextlib.suppress(OSError):
                            os.unlink(e.path)
                    continue
                entries.append((st.st_mtime, st.st_size, e.path))
                total += st.st_size
        for sub in _scandir(self.root / "objects"):
            for e in _scandir(Path(sub.path)):
                if e.name.startswith(_TEMP):
                    with contextlib.suppress(OSError):
                        if now - e.stat().st_mtime > _TEMP_AGE:
                            os.unlink(e.path)
        evicted = 0
        if total > self.tree_limit:
            entries.sort()
            for _mtime, size, path in entries:
                if total <= self.tree_limit:
                    break
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    evicted += 1
                total -= size
        self._count(evicted=evicted)
        return evicted

    def usage(self) -> dict[str, tuple[int, int]]:
        """(entries, bytes) per part: ``index``, ``snapshots``, ``trees``."""
        out: dict[str, tuple[int, int]] = {}
        parts = [(p.rstrip("/"), [self.root / "objects" / p.rstrip("/")]) for p in PREFIXES]
        parts.append(("trees", [Path(s.path) for s in _scandir(self.root / "trees")]))
        for label, dirs in parts:
            n = size = 0
            for d in dirs:
                for e in _scandir(d):
                    if e.name.startswith(_TEMP):
                        continue
                    with contextlib.suppress(OSError):
                        size += e.stat().st_size
                        n += 1
            out[label] = (n, size)
        return out

    # ----- files --------------------------------------------------------------------

    def _read(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except OSError:
            self._count(misses=1)
            return None
        return data

    def _write(self, path: Path, *parts: bytes | memoryview) -> None:
        if write_whole(path, *parts):
            self._count(stored=1)

    def _count(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)


def write_whole(path: Path, *parts: bytes | memoryview) -> bool:
    """Write PARTS as PATH, whole or not at all (a temporary name in its directory,
    renamed), so any process reading sees a whole entry or none; False (nothing written)
    on an I/O error: a cache write never fails a command."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TEMP, dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            for p in parts:
                f.write(p)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []
