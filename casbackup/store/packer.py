"""The packer: collects sealed blobs into packs and uploads them, then indexes them.

Write order (DESIGN §9, the crash-safety contract):
1. a pack is put (atomically) **before** any index object names it: entries join the
   in-memory index and the "unflushed" list only after the pack's put returned;
2. an index object is written every ``index_every`` packs or ``index.SPILL_BLOBS`` blobs,
   whichever comes first, and on ``flush()``, so a rerun
   after a crash finds the uploaded work; ``flush()`` returns only when every pack and
   the index naming them are durable — the snapshot (the commit point) comes after.

Concurrency: ``add`` is called from many worker threads. One lock guards the open packs
and the set of blob ids that are sealed but not yet indexed (``pending``), so a blob is
sealed and stored once per backup even when two files share it. Index lookups (the
compact files' bisects) run before that lock is taken; under it only the in-memory layer,
where this packer's own packs go, is checked again -- and, when a spill ran since the
lookups (``Index.spills`` changed), the spilled files too: an upload that finished in
between may have indexed the blob, left ``pending`` and spilled out of the dicts, and
the blob would otherwise be stored twice. Sealing happens outside
the lock; uploads run on a small pool with a bounded number of packs in flight, so
memory stays at about ``(in_flight + kinds) × pack_size``.

Failure: the first failed upload (or index write) ends the packer's run: every later
``reserve``/``add``/``flush`` raises that error at once (uploads still queued are
skipped), so a backup stops within a pack or two instead of reading the rest of its
source. Once the failure has been raised to a caller -- so the run that hit it is bound
to fail -- the packer is ``spent`` and ``Store.packer`` replaces it: blobs it had
reserved were never stored and must not look present, while packs it stored but had not
indexed yet are handed to the new packer to be indexed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ..crypto.codec import Codec
from ..errors import CasError
from ..faults import crash_point
from .index import SPILL_BLOBS, Index, PackInfo
from .pack import PackEntry
from .packsink import MemorySink, PackSink


class Packer:
    def __init__(
        self,
        codec: Codec,
        index: Index,
        put_pack: Callable[[str, bytes | memoryview], None],
        put_index: Callable[[list[PackInfo]], None],
        pack_size: int,
        *,
        uploaders: int = 2,
        index_every: int = 8,
        open_sink: Callable[[], PackSink] | None = None,
    ) -> None:
        self.codec = codec
        self.index = index
        self._put_pack = put_pack
        self._put_index = put_index
        self.pack_size = pack_size
        self.index_every = index_every
        self._lock = threading.Lock()
        # one open pack per kind; sealed blobs go into its sink as they come (memory, or
        # straight into a backend temp object: see packsink.py)
        self._open_sink = open_sink or (lambda: MemorySink(put_pack))
        self._open: dict[str, tuple[PackSink, list[PackEntry]]] = {}
        self._pending: set[bytes] = set()
        self._unflushed: list[PackInfo] = []
        self._pool = ThreadPoolExecutor(uploaders, thread_name_prefix="upload")
        self._slots = threading.BoundedSemaphore(uploaders)
        self._futures: list[Future[None]] = []
        self._failed: BaseException | None = None  # the first failed upload ends the run
        self._reported = False  # ... and was raised to a caller
        self.blobs_added = 0
        self.bytes_added = 0  # plaintext bytes of new blobs
        self.bytes_stored = 0  # sealed bytes of new blobs
        self.packs_written = 0

    def reserve(self, blob_id: bytes) -> bool:
        """True when the caller should seal and ``add`` this blob; False when it is
        already indexed or being stored by someone else."""
        return self.reserve_many([blob_id])[0]

    def reserve_many(self, blob_ids: list[bytes]) -> list[bool]:
        """``reserve`` for many blobs under one lock round (small files come in batches);
        a repeated id is reserved once."""
        out = []
        spills = self.index.spills
        known = [bid in self.index for bid in blob_ids]  # lock-free lookups first
        with self._lock:
            self._check()
            # what this packer indexed meanwhile is in the in-memory layer (``blobs``),
            # or, when its index object was written since the lookups, spilled out of it;
            # the spill count is read after the dicts were (a spill bumps it before they
            # lose its blobs, under the index's lock), so a spill between the two is seen
            for bid, k in zip(blob_ids, known, strict=True):
                new = not k and bid not in self.index.blobs and bid not in self._pending
                if new and self.index.spills != spills and self.index.in_spilled(bid):
                    new = False
                if new:
                    self._pending.add(bid)
                out.append(new)
        return out

    def add(self, kind: str, blob_id: bytes, sealed: bytes | memoryview,
            raw_length: int) -> None:
        """Add a reserved blob, already sealed (copied into the pack before returning)."""
        self.add_many(kind, [(blob_id, sealed, raw_length)])

    def add_many(self, kind: str, blobs: Sequence[tuple[bytes, bytes | memoryview, int]]) -> None:
        """Add reserved, sealed blobs ``(id, sealed, raw_length)`` under one lock round."""
        full: list[tuple[PackSink, list[PackEntry]]] = []
        with self._lock:
            # The blobs bound for one pack go into its sink in one write (a batch of
            # small files: one syscall and one hash update instead of one per blob);
            # their entries join the pack only once that write returned.
            run: list[bytes | memoryview] = []
            new: list[PackEntry] = []
            sink: PackSink | None = None
            size = 0
            for blob_id, sealed, raw_length in blobs:
                if sink is None:
                    if kind not in self._open:
                        self._open[kind] = (self._open_sink(), [])
                    sink = self._open[kind][0]
                    size = sink.size
                new.append(PackEntry(kind, blob_id, size, len(sealed), raw_length))
                run.append(sealed)
                size += len(sealed)
                if size >= self.pack_size:
                    self._append(kind, sink, run, new)
                    run, new, sink = [], [], None
                    full.append(self._open.pop(kind))
            if sink is not None:
                self._append(kind, sink, run, new)
        for sink, entries in full:
            self._submit(kind, sink, entries)

    def _append(self, kind: str, sink: PackSink, run: list[bytes | memoryview],
                new: list[PackEntry]) -> None:
        """Write RUN (one write for many blobs) to KIND's open pack, then add its entries."""
        sink.write(run[0] if len(run) == 1 else b"".join(run))
        self._open[kind][1].extend(new)
        self.blobs_added += len(new)
        self.bytes_added += sum(e.raw_length for e in new)
        self.bytes_stored += sum(e.length for e in new)

    def _submit(self, kind: str, sink: PackSink, entries: list[PackEntry]) -> None:
        self._slots.acquire()
        if self._failed is not None:
            self._slots.release()
            self._check()
        try:
            fut = self._pool.submit(self._upload, kind, sink, entries)
        except RuntimeError:  # closed: the run ended (a failed upload, a stop) while a
            self._slots.release()  # saver thread still had a full pack to hand in
            sink.discard()
            self._check()  # the run's own failure, not the pool's "after shutdown"
            raise CasError("the pack writer was closed before this pack was written") from None
        with self._lock:
            self._futures.append(fut)

    def _check(self) -> None:
        """Raise the failure of this run, if any (and remember it was reported)."""
        if self._failed is not None:
            self._reported = True
            raise self._failed

    def _upload(self, kind: str, sink: PackSink, entries: list[PackEntry]) -> None:
        try:
            if self._failed is not None:
                sink.discard()
                return  # the run failed: do not upload more of it
            name, size = sink.publish(self.codec, entries)  # 1. the pack is durable ...
            crash_point("packer:after-pack")
            info = PackInfo(name, kind, size, entries)
            self.index.add_pack(info)  # ... before anything may name it
            flush: list[PackInfo] | None = None
            with self._lock:
                self.packs_written += 1
                for e in entries:
                    self._pending.discard(e.id)
                self._unflushed.append(info)
                if len(self._unflushed) >= self.index_every or sum(
                        len(p.entries) for p in self._unflushed) >= SPILL_BLOBS:
                    flush, self._unflushed = self._unflushed, []
            if flush:
                self._put_index(flush)  # 2. index every few packs: a rerun reuses them
                crash_point("packer:after-index")
        except BaseException as exc:
            with self._lock:
                if self._failed is None:
                    self._failed = exc
            raise
        finally:
            self._slots.release()

    @property
    def spent(self) -> bool:
        """An upload failed and a caller has been told: make a new packer for new work."""
        return self._failed is not None and self._reported

    def take_unflushed(self) -> list[PackInfo]:
        """Packs that are stored but not yet named by an index object (handed to the
        packer that replaces a failed one, which indexes them on its next flush)."""
        with self._lock:
            out, self._unflushed = self._unflushed, []
        return out

    def adopt_unflushed(self, packs: list[PackInfo]) -> None:
        with self._lock:
            self._unflushed[:0] = packs

    def _wait(self) -> None:
        while True:
            with self._lock:
                futs, self._futures = self._futures, []
            if not futs:
                return
            for f in futs:
                try:
                    f.result()
                except BaseException:
                    self._reported = True
                    raise
            self._check()

    def settle(self) -> None:
        """Wait for the uploads in flight (each pack's put, then its index object and the
        write session's check of it), raising nothing: a run ending by another error
        calls it while that check still applies. A failure among them stays this
        packer's (``spent``)."""
        with contextlib.suppress(Exception):
            self._wait()

    def flush(self) -> None:
        """Write every open pack, wait for all uploads, and index what is unindexed."""
        self._check()
        with self._lock:
            open_packs, self._open = self._open, {}
        for kind, (sink, entries) in open_packs.items():
            if entries:
                self._submit(kind, sink, entries)
        self._wait()
        with self._lock:
            flush, self._unflushed = self._unflushed, []
        if flush:
            self._put_index(flush)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            open_packs, self._open = self._open, {}
        for sink, _ in open_packs.values():
            sink.discard()  # never published: nothing may name it

