"""An open store's read path: blobs and trees by BlobId, through the index, and the blobs
of one pack in coalesced ranges (``packread.py``). A layer of ``Store`` (store.py).

Invariants:
- Every blob returned was checked against its keyed BlobId while unsealing (the codec's
  AEAD and id check); damage raises ``IntegrityError`` naming the pack. A pack that is
  missing or shorter than its index entry says is damage too (``objects.present``).
- Tree blobs may come from the object cache of a remote store (``store/cache.py``),
  checked the same way; a cached copy that fails the check is dropped and read again
  from the store, never returned.
- ``iter_blobs`` holds at most ``ahead + 1`` blobs at once, whatever the number of ids.
- Writes nothing: the index it looks blobs up in is ``load_index``'s (indexing.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Generator, Iterable
from typing import Any

from ..errors import IntegrityError
from ..ids import TREE
from ..lru import LRU
from ..model.tree import Tree, decode_maps
from ..scratch import Scratch
from .index import Location
from .indexing import StoreIndexing
from .layout import pack_key
from .pack import PackEntry, parse_header
from .packread import PackStream, read_header


class StoreReads(StoreIndexing):
    """Blobs, trees and packs of an open store, read and checked. Thread-safe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tree_cache: LRU[bytes, Tree] = LRU(4096)
        self._maps_cache: OrderedDict[bytes, list[dict[str, Any]]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # ----- blobs -----------------------------------------------------------------------

    def get_blob(self, blob_id: bytes) -> bytes:
        loc = self.load_index().lookup(blob_id)
        e = loc.entry
        sealed = self._get(pack_key(loc.pack), offset=e.offset, length=e.length)
        try:
            return self.unseal_entry(e, sealed)
        except IntegrityError as err:
            raise IntegrityError(f"pack {loc.pack[:16]}: {err}") from None

    def iter_blobs(self, ids: Iterable[bytes], ahead: int = 4) -> Generator[bytes, None, None]:
        """The checked plaintexts of blobs IDS in order (a file's content), reading up to
        AHEAD blobs ahead on threads: at most AHEAD + 1 blobs are held at once, whatever
        the number of IDS. A blob repeated right after itself (zero runs) is read once."""
        from concurrent.futures import Future, ThreadPoolExecutor

        it = iter(ids)
        queue: deque[tuple[bytes, Future[bytes] | None]] = deque()
        with ThreadPoolExecutor(max_workers=min(ahead, self.parallel_reads())) as pool:
            try:
                last = None
                for bid in it:
                    queue.append((bid, None if bid == last else pool.submit(self.get_blob, bid)))
                    last = bid
                    if len(queue) > ahead:
                        break
                data = b""
                while queue:
                    bid, fut = queue.popleft()
                    if fut is not None:
                        data = b""  # the previous blob goes before the next is awaited
                        data = fut.result()
                    yield data
                    nxt = next(it, None)
                    if nxt is not None:
                        queue.append((nxt, None if nxt == last else
                                      pool.submit(self.get_blob, nxt)))
                        last = nxt
            finally:
                for _, fut in queue:
                    if fut is not None:
                        fut.cancel()

    def locate(self, blob_id: bytes) -> Location:
        return self.load_index().lookup(blob_id)

    def parallel_reads(self) -> int:
        """How many pack reads pay to run at once: 2 on a local disk (restore with 4
        measured the same speed and 10-15 MiB more peak RSS: each reader holds its
        buffers), 4 on a remote store, to hide the latency of each request."""
        return 2 if self.backend.properties().is_local else 4

    def unseal_entry(self, entry: PackEntry, sealed: bytes | memoryview) -> bytes:
        return self.codec.unseal_blob(entry.kind, entry.id, sealed, entry.raw_length)

    def unseal_entry_into(self, entry: PackEntry, sealed: bytes | memoryview,
                          scratch: Scratch) -> bytes | memoryview:
        """``unseal_entry`` decrypting into SCRATCH (``Codec.unseal_blob_into``)."""
        return self.codec.unseal_blob_into(entry.kind, entry.id, sealed, entry.raw_length,
                                           scratch)

    # ----- packs -----------------------------------------------------------------------

    def stream_blobs(self, pack: str, entries: Iterable[PackEntry], *,
                     size: int | None = None, whole: int | None = None,
                     unseal: bool = True) -> PackStream:
        """The blobs ENTRIES of PACK, read in coalesced ranges, each unsealed and checked
        against its BlobId (``packread.py``). SIZE: the pack's size on the backend, when
        known (an entry past it is yielded as truncated, unread); WHOLE: the pack's size,
        to read every byte of it and ``finish()`` with its hash and header."""
        return PackStream(self, pack, entries, size=size, whole=whole, unseal=unseal)

    def read_pack_header(self, pack: str, size: int) -> list[PackEntry]:
        """A pack's entries from its trailer and header alone (two ranged reads)."""
        return read_header(self, pack, size)

    def pack_entries(self, pack: str, data: bytes | None = None) -> list[PackEntry]:
        return parse_header(self.codec, data if data is not None else self.read_pack(pack), pack)

    # ----- trees -----------------------------------------------------------------------

    def load_tree(self, tree_id: bytes) -> Tree:
        t = self._tree_cache.get(tree_id)
        if t is None:
            t = Tree.decode(self.tree_blob(tree_id), tree_id)
            self._tree_cache.put(tree_id, t)
        return t

    def load_tree_maps(self, tree_id: bytes) -> list[dict[str, Any]]:
        """The raw node maps of a tree (for backup's comparison with its parent)."""
        with self._cache_lock:
            t = self._maps_cache.get(tree_id)
            if t is not None:
                return t
        t = decode_maps(self.tree_blob(tree_id), tree_id)
        with self._cache_lock:
            self._maps_cache[tree_id] = t
            if len(self._maps_cache) > 64:  # a backup reads each parent tree once: a
                self._maps_cache.popitem(last=False)  # big cache only held the whole tree
        return t

    def tree_blob(self, tree_id: bytes) -> bytes:
        """The checked plaintext of tree blob TREE_ID: from the object cache when it
        holds the blob and it passes the BlobId check (else the entry is dropped), from
        the store otherwise (and then kept in the cache)."""
        cache = self.object_cache
        if cache is None:
            return self.get_blob(tree_id)
        hit = cache.get_tree(tree_id)
        if hit is not None:
            try:
                return self.codec.unseal_blob(TREE, tree_id, hit[1], hit[0])
            except IntegrityError:
                cache.drop_tree(tree_id)  # damaged or of another key: refetch
        loc = self.load_index().lookup(tree_id)
        e = loc.entry
        sealed = self._get(pack_key(loc.pack), offset=e.offset, length=e.length)
        try:
            out = self.codec.unseal_blob(e.kind, tree_id, sealed, e.raw_length)
        except IntegrityError as err:
            raise IntegrityError(f"pack {loc.pack[:16]}: {err}") from None
        if e.kind == TREE:
            cache.put_tree(tree_id, e.raw_length, sealed)
        return out
