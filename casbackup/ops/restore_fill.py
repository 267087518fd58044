"""restore's content writer: each pack of the blob plan (``restore_blobs``) fetched once,
its blobs written into every file position that uses them.

Invariants:
- One pack reader per pack (``Store.stream_blobs``: coalesced ranges); every blob is
  checked (``checked()``) before any of it is written, and written out before the next
  blob reuses its buffer.
- A blob is written only into a file that exists (``_wait_created``) and has not
  failed, reopened as the inode the creator made; a one-blob file nobody links to is
  created by the write that fills it (``O_EXCL``: one open instead of two), and removed
  if that write fails.
- All-zero runs are not written into a new file, so zero runs become holes (sparse files
  restore sparse; trailing zeros by ``ftruncate``); a file updated in place gets whole
  blobs (it holds old bytes where zeros go).
- A write error fails only that file (``_fail``); a stop is seen at the next blob.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

from ..faults import crash_point
from ..store import PackEntry
from .restore_blobs import Plan, nonzero_runs, write_runs
from .restore_existing import UPDATE
from .restore_fs import identity
from .restore_state import NEW_FILE, Stopped, WriterState


class Filler(WriterState):
    """The packs' content, written into the files that use it."""

    # 2. content: each pack fetched once
    def fill(self, plan: Plan, workers: int) -> None:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="restore")
        futs: list[Future[None]] = []
        try:
            futs = [pool.submit(self._fill_pack, pack, blobs) for pack, blobs in plan.items()]
            for f in futs:
                f.result()
        except Stopped:
            pass  # the creator failed: its error is raised by create_and_fill
        except BaseException:
            self._halt()
            for f in futs:
                f.cancel()
            raise
        finally:
            pool.shutdown(wait=True)

    def _fill_pack(
        self, pack: str, blobs: dict[bytes, tuple[PackEntry, list[tuple[int, int]]]]
    ) -> None:
        # one pack reader (store/packread.py): coalesced ranges, each blob checked
        stream = self.store.stream_blobs(pack, (e for e, _ in blobs.values()))
        with self._cond:
            self.res.bytes_read += sum(end - start for start, end, _ in stream.reads)
        for blob in stream:
            if self._stop:
                raise Stopped()
            plain = blob.checked()  # written out before the next blob reuses its buffer
            runs = nonzero_runs(plain)
            verdict = self.sv.verdict
            for idx, off in blobs[blob.entry.id][1]:
                if self._failed[idx]:
                    continue
                try:
                    if idx in self._in_fill:
                        self._create_write(idx, plain, runs)
                    elif self._wait_created(idx):
                        # a file updated in place holds old bytes where zeros go
                        whole = [(0, len(plain))] if plain else []
                        self._pwrite(idx, plain, off,
                                     whole if verdict[idx] == UPDATE else runs)
                except OSError as err:
                    self._fail(idx, err)
            self.obs.progress(len(plain) * len(blobs[blob.entry.id][1]))
            crash_point("restore:blob")

    def _create_write(self, i: int, data: bytes | memoryview,
                      runs: list[tuple[int, int]]) -> None:
        """Create a one-blob file, write its blob (holes for zero runs), apply metadata."""
        it = self.items[i]
        if self._skip(i):
            return
        name = it.node.name
        pfd = self.dirs.acquire(it.parent)
        try:
            fd = self._replace(pfd, name, lambda: os.open(name, NEW_FILE, 0o600, dir_fd=pfd))
            try:
                if it.node.nlink > 1:  # a later window may link to it (restore_window)
                    self._ident[i] = identity(os.fstat(fd))
                write_runs(fd, data, 0, runs)
                if not runs or runs[-1][1] < it.node.size:
                    os.ftruncate(fd, it.node.size)  # trailing zeros stay a hole
                self._complete(i, fd)
            except BaseException:
                os.unlink(name, dir_fd=pfd)  # ours (O_EXCL): no half-file stays
                raise
            finally:
                os.close(fd)
        finally:
            self.dirs.release(it.parent)
        with self._cond:
            self._left[i] = 0
            self.res.bytes_written += len(data)

    def _pwrite(self, i: int, data: bytes | memoryview, base: int,
                runs: list[tuple[int, int]]) -> None:
        fd = self._open_own(i, os.O_WRONLY) if runs else -1
        try:
            if runs:
                write_runs(fd, data, base, runs)
            with self._cond:
                self.res.bytes_written += len(data) if runs else 0
                self._left[i] -= 1
                last = self._left[i] == 0
            if last:
                if fd < 0:
                    fd = self._open_own(i, os.O_WRONLY)
                self._complete(i, fd)
        finally:
            if fd >= 0:
                os.close(fd)

