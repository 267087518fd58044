"""An open store's blob writer: sealing blobs and handing them to the packer, which puts
packs and the index objects naming them (``packer.py``). ``Store`` builds one on its first
write and imports this module only then: a reading command never loads it.

Invariants:
- A blob is sealed and packed only by the thread whose ``reserve`` won it: two threads
  adding the same blob store it once, and the loser's ``AddResult`` says not added.
- Writes follow DESIGN §9: a pack is put (exclusively, content-named) before the index
  object naming it (``Store.write_index``), and after each such index object the write
  session's check runs (``after_index``, store/commit.py).
- A packer that failed (``spent``) is replaced on the next write: blobs it reserved but
  never stored do not look present, and the packs it stored but did not index are
  adopted by the new packer, so they still get an index object.
- A tree blob written goes into the object cache too (sealed, as in the pack), so a
  backup's next parent comparison reads no pack.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..ids import TREE
from ..scratch import for_thread
from .addresult import AddResult
from .index import PackInfo
from .indexing import StoreIndexing
from .layout import pack_key, pack_temp_dir

if TYPE_CHECKING:
    from .packer import Packer
    from .packsink import PackSink


class BlobWriter:
    """The write path of one open store. Thread-safe for concurrent ``add_blob``."""

    def __init__(self, store: StoreIndexing) -> None:
        self.store = store
        self._packer: Packer | None = None
        self._packer_lock = threading.Lock()

    @property
    def packer(self) -> Packer:
        with self._packer_lock:
            stored: list[PackInfo] = []
            if self._packer is not None and self._packer.spent:
                # a failed run's reserved-but-unstored blobs must not look present; its
                # stored-but-unindexed packs still need an index object
                self._packer.close()  # uploads in flight finish (and are kept)
                stored = self._packer.take_unflushed()
                self._packer = None
            if self._packer is None:
                from .packer import Packer

                st = self.store
                st.load_index()
                self._packer = Packer(
                    st.codec, st.index,
                    lambda n, d: st.put_named(pack_key(n), d),
                    self._write_index_object,
                    st.config.pack_size,
                    uploaders=max(1, min(4, st.backend.properties().connections)),
                    open_sink=self._stream_sink_factory(),
                )
                self._packer.adopt_unflushed(stored)
            return self._packer

    def add_blob(self, kind: str, data: bytes | memoryview,
                 blob_id: bytes | None = None) -> AddResult:
        codec = self.store.codec
        bid = blob_id if blob_id is not None else codec.blob_id(data)
        packer = self.packer
        if not packer.reserve(bid):
            return AddResult(bid, False, 0)
        # Sealed in this thread's reused buffer (scratch.py; a blob too big for it to keep
        # gets a buffer of its own); the packer copies the bytes out before ``add`` returns.
        view = codec.seal_into(kind, data, for_thread("seal"))
        cache = self.store.object_cache
        if kind == TREE and cache is not None:
            cache.put_tree(bid, len(data), view)
        packer.add(kind, bid, view, len(data))
        return AddResult(bid, True, len(view))

    def add_blobs(self, kind: str, datas: list[bytes]) -> list[AddResult]:
        codec = self.store.codec
        cache = self.store.object_cache
        ids = [codec.blob_id(d) for d in datas]
        packer = self.packer
        new = packer.reserve_many(ids)
        sealed: list[tuple[bytes, bytes, int]] = []
        out = []
        for bid, data, is_new in zip(ids, datas, new, strict=True):
            if is_new:
                s = codec.seal(kind, data)
                if kind == TREE and cache is not None:
                    cache.put_tree(bid, len(data), s)
                sealed.append((bid, s, len(data)))
                out.append(AddResult(bid, True, len(s)))
            else:
                out.append(AddResult(bid, False, 0))
        if sealed:
            packer.add_many(kind, sealed)
        return out

    def add_sealed(self, kind: str, blobs: list[tuple[bytes, bytes, int]]) -> list[bool]:
        packer = self.packer
        new = packer.reserve_many([b[0] for b in blobs])
        keep = [b for b, is_new in zip(blobs, new, strict=True) if is_new]
        cache = self.store.object_cache
        if kind == TREE and cache is not None:
            for bid, s, n in keep:
                cache.put_tree(bid, n, s)
        if keep:
            packer.add_many(kind, keep)
        return new

    def flush(self) -> None:
        if self._packer is not None:
            self._packer.flush()

    def settle(self) -> None:
        """Wait for the packer's uploads in flight, their index objects and
        ``after_index`` checks included (``Packer.settle``)."""
        if self._packer is not None:
            self._packer.settle()

    def close(self) -> None:
        if self._packer is not None:
            self._packer.close()

    def discard(self) -> None:
        """Flush and close the packer and forget it (``Store.reset_index``): the next write
        builds a packer over the index loaded then."""
        if self._packer is not None:
            self._packer.flush()
            self._packer.close()
            self._packer = None

    def _write_index_object(self, packs: list[PackInfo]) -> None:
        """The packer's index write, then the write session's check (``after_index``)."""
        name = self.store.write_index(packs)
        if self.store.after_index is not None:
            self.store.after_index(packs, name)

    def _stream_sink_factory(self) -> Callable[[], PackSink] | None:
        """Backends that can write an object in place (local) get packs streamed to
        them instead of held in memory."""
        temp_writer = getattr(self.store.backend, "temp_writer", None)
        if temp_writer is None:
            return None
        from .packsink import StreamSink

        return lambda: StreamSink(temp_writer(pack_temp_dir()))
