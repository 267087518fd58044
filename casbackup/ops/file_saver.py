"""The file saver: reads, cuts, hashes, seals and packs files on a pool of threads.

Invariants:
- The walker hands over *open* file descriptors in batches (many small files, or one
  big one); one batch is one pool task, so the per-file cost of futures and locks is paid
  once per batch. At most ``max_inflight`` batches are queued or running (the walker
  blocks), which bounds open descriptors and memory.
- Reading, cutting (pyfastcdc), hashing (BLAKE3), compressing (zstd) and sealing (AES)
  all release the GIL, so the pool uses every core for big files. Batches of small files
  (every file below the chunker's minimum) run on one thread of their own: their calls
  are too short for a released GIL to pay, and a second thread on them costs CPU in
  contention. Which thread saves a file changes no blob id and no tree.
- A file that changes while it is read (size/mtime/ctime differ before and after) is read
  again, up to ``REREAD`` times; if it still changes it is stored as last read, counted
  in ``changed_during_read`` and warned about — never stored as a silent mix. The
  result's ``size`` is the length of the content stored (the archiver records it as the
  node's size: a file that grew between the walker's lstat and its read is not recorded
  with the old size).
- Every descriptor handed over is closed exactly once, also on errors.
- With ``procs`` > 0 (save_pool.py), batches of small files after the first
  ``POOL_AFTER`` go to worker processes instead: they read, hash and seal
  (``small_read.read_small`` and the store's ``Sealer``: the thread's code), this process
  reserves and packs (``Store.add_sealed``, on the pool's reader thread). The walker
  sends the batch itself (a few syscalls) and the batch's slot is held until its reply
  is packed, so ``max_inflight`` bounds these batches too. The descriptors stay open
  here until the reply: a file a worker found changed takes ``_save_one`` here. Big
  files stay on the threads (their calls release the GIL already). Which path saves a
  file changes no blob id and no tree.
- ``dry_run``: blobs are hashed and counted, never stored.
"""

from __future__ import annotations

import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..ids import DATA
from ..model.snapshot import Summary
from ..model.tree import Node
from .capabilities import BlobSaver
from .observer import Observer
from .save_pool import Reply, SavePool, Unavailable
from .save_worker import CAREFUL, EMPTY, SEALED
from .small_read import read_small

REREAD = 2
POOL_AFTER = 8  # small batches saved on the thread before the worker processes start
_KEEP_RESIDENT = 4 << 20  # of each saver thread's read buffer, kept between files
_READ_SLACK = 2 << 20  # read buffer = max_size + this (the cutter re-cuts at most a tail)


@dataclass(slots=True)
class FileResult:
    content: list[bytes]
    bytes_read: int
    changed: bool
    size: int | None = None  # the content's length, where it may not be the walker's lstat's


class FileSaver:
    def __init__(self, store: BlobSaver, observer: Observer, summary: Summary,
                 lock: threading.Lock, *, dry_run: bool, workers: int,
                 max_inflight: int, procs: int = 0) -> None:
        self.store = store
        self.obs = observer
        self.summary = summary
        self._lock = lock
        self.dry_run = dry_run
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="file-saver")
        # batches of small files: one thread of their own (see ``submit``)
        self._small_pool = ThreadPoolExecutor(1, thread_name_prefix="file-saver-small")
        self._slots = threading.BoundedSemaphore(max_inflight)
        self._dry_seen: set[bytes] = set()
        self._small = store.chunker.params.min_size
        self._local = threading.local()  # per saver thread: the read buffer
        # batches of small files after the first POOL_AFTER: worker processes
        # (save_pool.py), their replies packed on its reader threads
        self._procs = SavePool(store.sealer().spec(), procs) if procs and not dry_run else None
        self._small_batches = 0

    def add(self, kind: str, data: bytes | memoryview) -> bytes:
        if self.dry_run:
            bid = self.store.blob_id(data)
            with self._lock:
                if not self.store.has_blob(bid) and bid not in self._dry_seen:
                    self._dry_seen.add(bid)
                    self.summary.blobs_added += 1
                    self.summary.bytes_added += len(data)
            return bid
        r = self.store.add_blob(kind, data)
        if r.added:
            with self._lock:
                self.summary.blobs_added += 1
                self.summary.bytes_added += len(data)
                self.summary.bytes_stored += r.stored
        return r.id

    def _read_once(self, fd: int, size_hint: int) -> tuple[list[bytes], int]:
        if size_hint < self._small:
            # one read of size+1: a short read on a regular file is end of file
            parts = [os.pread(fd, size_hint + 1, 0)]
            while len(parts[-1]) == (size_hint + 1 if len(parts) == 1 else 1 << 20):
                parts.append(os.pread(fd, 1 << 20, sum(len(p) for p in parts)))
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self.obs.progress(len(data))
            return ([self.add(DATA, data)] if data else []), len(data)
        content: list[bytes] = []
        total = 0
        mm, buf = self._buffer()
        with open(fd, "rb", buffering=0, closefd=False) as f:
            f.seek(0)
            for chunk in self.store.chunker.cut_reader(f.readinto, buf):
                content.append(self.add(DATA, chunk))
                total += len(chunk)
                self.obs.progress(len(chunk))
        if total > _KEEP_RESIDENT:  # give back what a big file touched beyond that
            mm.madvise(mmap.MADV_DONTNEED, _KEEP_RESIDENT, len(mm) - _KEEP_RESIDENT)
        return content, total

    def _buffer(self) -> tuple[mmap.mmap, memoryview]:
        """This thread's read buffer (max_size + 2 MiB), reused from file to file. Anonymous
        memory, faulted in as far as a file reaches; after a file bigger than
        ``_KEEP_RESIDENT`` the rest is given back (every thread holding 16 MiB for the
        whole backup raised its peak RSS by ~16 MiB). pyfastcdc's stream chunker instead
        zero-fills 16 MiB for every file: four times its size in page faults for a file
        of a few MiB."""
        bufs: tuple[mmap.mmap, memoryview] | None = getattr(self._local, "bufs", None)
        if bufs is None:
            mm = mmap.mmap(-1, self.store.chunker.params.max_size + _READ_SLACK)
            bufs = self._local.bufs = (mm, memoryview(mm))
        return bufs

    def _save_one(self, fd: int, node: Node, display: str) -> FileResult:
        """Read one open file until it reads the same twice in a row (or give up)."""
        try:
            os.set_blocking(fd, True)
            read_total = 0
            # the walker's lstat is the "before" of the first attempt
            before = (node.size, node.mtime_ns, node.ctime_ns)
            for attempt in range(REREAD + 1):
                content, n = self._read_once(fd, before[0])
                read_total += n
                st = os.fstat(fd)
                after = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                if before == after and n == st.st_size:
                    return FileResult(content, read_total, False, n)
                if attempt == REREAD:
                    self.obs.warn(display, "file changed while it was read; stored as last read")
                    return FileResult(content, read_total, True, n)
                before = after
            raise AssertionError("unreachable")
        finally:
            os.close(fd)

    def _save_batch(self, batch: list[tuple[int, Node, bytes]]) -> list[FileResult]:
        """Save a batch of files (many small ones, or one large one) in one worker task,
        so the per-file cost of futures and locks is paid once per batch."""
        try:
            if not self.dry_run and len(batch) > 1:
                return self._save_small_batch(batch)
            out = []
            for i, (fd, node, path) in enumerate(batch):
                try:
                    out.append(self._save_one(fd, node, os.fsdecode(path)))
                except BaseException:
                    for fd2, _, _ in batch[i + 1 :]:
                        os.close(fd2)
                    raise
            return out
        finally:
            self._slots.release()

    def _save_small_batch(self, batch: list[tuple[int, Node, bytes]]) -> list[FileResult]:
        """Small files (each one blob): read all, then hash, reserve, seal and pack them
        together — two packer lock rounds per batch instead of three per file. A file
        that changed while read takes the careful path of ``_save_one`` (re-reads)."""
        results: list[FileResult | None] = [None] * len(batch)
        datas: list[bytes] = []
        where: list[int] = []
        i = 0
        try:
            for i, (fd, node, path) in enumerate(batch):
                try:
                    data = (read_small(fd, node.size, node.mtime_ns, node.ctime_ns)
                            if node.size < self._small else None)
                except BaseException:
                    os.close(fd)
                    raise
                if data is not None:
                    os.close(fd)
                    if data:
                        datas.append(data)
                        where.append(i)
                    else:
                        results[i] = FileResult([], 0, False)
                else:  # changed since the walker's lstat, or grew: the careful path
                    results[i] = self._save_one(fd, node, os.fsdecode(path))
        except BaseException:
            for fd2, _, _ in batch[i + 1 :]:
                os.close(fd2)
            raise
        added = self.store.add_blobs(DATA, datas)
        nbytes = 0
        with self._lock:
            s = self.summary
            for data, r in zip(datas, added, strict=True):
                nbytes += len(data)
                if r.added:
                    s.blobs_added += 1
                    s.bytes_added += len(data)
                    s.bytes_stored += r.stored
        for idx, data, r in zip(where, datas, added, strict=True):
            results[idx] = FileResult([r.id], len(data), False)
        self.obs.progress(nbytes)
        done = [r for r in results if r is not None]
        assert len(done) == len(batch)
        return done

    def _to_procs(self, batch: list[tuple[int, Node, bytes]]) -> Future[list[FileResult]] | None:
        """Send a batch of small files to a worker process (from the walker's thread: the
        request is a few syscalls); its reply is reserved and packed on the pool's reader
        thread. None when no worker could be started (the caller saves it on a thread).
        Every descriptor of BATCH is closed, also on errors; the batch's slot is given
        back when its future is set."""
        assert self._procs is not None
        try:
            reply = self._procs.request(
                [(fd, n.size, n.mtime_ns, n.ctime_ns) for fd, n, _ in batch])
        except Unavailable:
            return None  # (the descriptors are still the caller's to use)
        except BaseException:
            for fd, _, _ in batch:
                os.close(fd)
            self._slots.release()
            raise
        out: Future[list[FileResult]] = Future()

        def done(r: Future[Reply]) -> None:
            try:
                exc = r.exception()
                if exc is not None:
                    for fd, _, _ in batch:
                        os.close(fd)
                    out.set_exception(exc)
                else:
                    out.set_result(self._proc_batch(batch, *r.result()))
            except BaseException as e:  # (its descriptors were closed by _proc_batch)
                out.set_exception(e)
            finally:
                self._slots.release()

        reply.add_done_callback(done)
        return out

    def _proc_batch(self, batch: list[tuple[int, Node, bytes]], tags: bytes,
                    ids: list[bytes], blobs: list[bytes]) -> list[FileResult]:
        if tags.count(SEALED) == len(batch):  # the common case: every file a new blob
            for fd, _, _ in batch:
                os.close(fd)
            sizes = [node.size for _, node, _ in batch]
            new = self.store.add_sealed(DATA, list(zip(ids, blobs, sizes, strict=True)))
            with self._lock:
                s = self.summary
                for blob, n, is_new in zip(blobs, sizes, new, strict=True):
                    if is_new:
                        s.blobs_added += 1
                        s.bytes_added += n
                        s.bytes_stored += len(blob)
            self.obs.progress(sum(sizes))
            return [FileResult([bid], n, False) for bid, n in zip(ids, sizes, strict=True)]
        return self._proc_mixed(batch, tags, ids, blobs)

    def _proc_mixed(self, batch: list[tuple[int, Node, bytes]], tags: bytes,
                    ids: list[bytes], blobs: list[bytes]) -> list[FileResult]:
        """A reply with empty files, blobs a worker sealed before, or files it found
        changed (the careful path here, on this process's descriptor)."""
        results: list[FileResult | None] = [None] * len(batch)
        sealed: list[tuple[bytes, bytes, int]] = []
        sealed_at: list[int] = []
        dups: list[bytes] = []
        dup_at: list[int] = []
        k = 0  # next id and blob
        i = -1
        try:
            for i, ((fd, node, path), tag) in enumerate(zip(batch, tags, strict=True)):
                if tag == CAREFUL:
                    results[i] = self._save_one(fd, node, os.fsdecode(path))  # closes fd
                    continue
                os.close(fd)
                if tag == EMPTY:
                    results[i] = FileResult([], 0, False)
                elif tag == SEALED:
                    sealed.append((ids[k], blobs[k], node.size))
                    sealed_at.append(i)
                    k += 1
                else:
                    dups.append(blobs[k])
                    dup_at.append(i)
                    k += 1
        except BaseException:
            for fd2, _, _ in batch[i + 1 :]:
                os.close(fd2)
            raise
        new = self.store.add_sealed(DATA, sealed) if sealed else []
        again = self.store.add_blobs(DATA, dups) if dups else []
        nbytes = 0
        with self._lock:
            s = self.summary
            for (bid, blob, n), is_new, idx in zip(sealed, new, sealed_at, strict=True):
                nbytes += n
                results[idx] = FileResult([bid], n, False)
                if is_new:
                    s.blobs_added += 1
                    s.bytes_added += n
                    s.bytes_stored += len(blob)
            for data, r, idx in zip(dups, again, dup_at, strict=True):
                nbytes += len(data)
                results[idx] = FileResult([r.id], len(data), False)
                if r.added:
                    s.blobs_added += 1
                    s.bytes_added += len(data)
                    s.bytes_stored += r.stored
        self.obs.progress(nbytes)
        done = [r for r in results if r is not None]
        assert len(done) == len(batch)
        return done

    def submit(self, batch: list[tuple[int, Node, bytes]]) -> Future[list[FileResult]]:
        """Queue a batch of open files (blocks while ``max_inflight`` batches are out).
        A batch of small files (each below the chunker's minimum: one blob each) goes to
        the one small-file thread, a big file to the pool: a small file's hash, zstd and
        AES calls are too short for releasing the GIL to buy anything, so two threads
        on them only fight for it with the walker (50,000 files of 0.2-2 KB: 6.8 CPU-s
        and 5.3 s with two, 4.8-5.6 and 4.1-4.9 with one), while a big file's calls
        are long and run on every core."""
        self._slots.acquire()
        small = all(node.size < self._small for _, node, _ in batch)
        pool = self._small_pool if small else self._pool
        if small and self._procs is not None:
            self._small_batches += 1
            if self._small_batches > POOL_AFTER:
                fut = self._to_procs(batch)
                if fut is not None:
                    return fut
        try:
            return pool.submit(self._save_batch, batch)
        except BaseException:
            self._slots.release()
            raise

    def close(self) -> None:
        try:
            self._small_pool.shutdown(wait=True)
            self._pool.shutdown(wait=True)
        finally:
            if self._procs is not None:
                self._procs.close()
