"""File contents of a mount, read on demand: a range read fetches only the blobs it covers.

- ``Content.open(ids)`` places a file's blobs end to end (their lengths come from the
  index, no data is read) and checks they add up to the node's size; ``read(h, off, n)``
  then finds the blobs covering ``[off, off + n)`` by bisection and reads those, and only
  those, through ``BlobCache``.
- ``BlobCache`` keeps recently read plaintexts up to ``max_bytes`` in an ``LRU`` (the
  one the store's tree cache uses) and reads each blob once however many threads want it
  at the same moment (the kernel sends reads of one file in parallel): a second reader
  waits for the first's result. ``fetched`` counts the blobs read from the store.
- A sequential reader (reads that each start where the previous one ended, 1 MiB of them
  in a row) gets the blob after the last one it touched read ahead on a thread; a random
  reader gets no read-ahead, so it fetches exactly the blobs its reads cover.

Invariants: at most ``max_bytes`` of plaintext plus the blobs being read and returned are
held, whatever the size of the files read (a ``cat`` of a 1 GB file holds a few blobs);
every byte returned comes from ``Store.get_blob``, which checks each blob's id.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import IntegrityError
from ..lru import LRU

DEFAULT_CACHE = 64 << 20  # restic mount's blob cache is 64 MiB too
# a reader that read this much without a jump is sequential (the kernel's own read-ahead
# of a random read is at most 128 KiB, so it never looks like one)
SEQUENTIAL = 1 << 20


class BlobCache:
    """Plaintexts of blobs by id, at most ``max_bytes`` of them, each fetched once."""

    def __init__(self, fetch: Callable[[bytes], bytes], max_bytes: int = DEFAULT_CACHE) -> None:
        self._fetch = fetch
        self.max_bytes = max_bytes
        self._blobs: LRU[bytes, bytes] = LRU(max_bytes, len)
        self._pending: dict[bytes, Future[bytes]] = {}
        self._mu = threading.Lock()
        self.fetched = 0  # blobs read from the store (not from the cache)

    @property
    def held(self) -> int:
        """The bytes of plaintext cached."""
        return self._blobs.held

    def get(self, blob_id: bytes) -> bytes:
        with self._mu:
            data = self._blobs.get(blob_id)
            if data is not None:
                return data
            fut = self._pending.get(blob_id)
            mine = fut is None
            if fut is None:
                fut = self._pending[blob_id] = Future()
        if not mine:
            return fut.result()
        try:
            data = self._fetch(blob_id)
        except BaseException as e:
            with self._mu:
                del self._pending[blob_id]
            fut.set_exception(e)
            raise
        with self._mu:
            del self._pending[blob_id]
            self.fetched += 1
            self._blobs.put(blob_id, data)
        fut.set_result(data)
        return data

    def has(self, blob_id: bytes) -> bool:
        with self._mu:
            return blob_id in self._blobs or blob_id in self._pending


@dataclass(slots=True)
class Handle:
    """An open file: its blobs, where each starts, and where the last read ended."""

    ids: list[bytes]
    starts: list[int]  # starts[i] = offset of blob i; starts[-1] = size
    what: str = ""  # the file, for messages
    last_end: int = -1
    run: int = 0  # bytes read sequentially up to last_end
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> int:
        return self.starts[-1]


class Content:
    """Open files and their range reads over one ``BlobCache``."""

    def __init__(self, cache: BlobCache, length: Callable[[bytes], int],
                 read_ahead: bool = True) -> None:
        self.cache = cache
        self._length = length  # a blob's plaintext length, from the index
        self._ahead = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readahead") \
            if read_ahead else None

    def open(self, ids: list[bytes], size: int, what: str) -> Handle:
        starts = [0]
        for b in ids:
            starts.append(starts[-1] + self._length(b))
        if starts[-1] != size:
            raise IntegrityError(f"{what}: its blobs hold {starts[-1]} bytes, the tree says "
                                 f"{size}")
        return Handle(list(ids), starts, what)

    def read(self, h: Handle, offset: int, size: int) -> bytes:
        end = min(offset + size, h.size)
        if offset >= end:
            return b""
        i = bisect.bisect_right(h.starts, offset) - 1
        parts: list[memoryview] = []
        pos = offset
        while pos < end:
            data = self.cache.get(h.ids[i])
            lo, hi = pos - h.starts[i], min(end, h.starts[i + 1]) - h.starts[i]
            parts.append(memoryview(data)[lo:hi])
            pos = h.starts[i] + hi
            i += 1
        with h.lock:
            h.run = h.run + (end - offset) if offset == h.last_end else end - offset
            h.last_end = end
            sequential = h.run >= SEQUENTIAL
        if sequential and self._ahead is not None and i < len(h.ids) \
                and not self.cache.has(h.ids[i]):
            self._ahead.submit(self._prefetch, h.ids[i])
        return parts[0].tobytes() if len(parts) == 1 else b"".join(parts)

    def _prefetch(self, blob_id: bytes) -> None:
        # on failure the read that needs it fetches it again and reports the error
        with contextlib.suppress(Exception):
            self.cache.get(blob_id)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.shutdown(wait=False, cancel_futures=True)
