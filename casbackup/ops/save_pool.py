"""The save pool: worker processes that read, hash and seal batches of small files.

The first backup of many small files is bound by Python under the GIL (~100 CPU-us a
file, benchmarks/README.md "Wave 6"): a second thread buys nothing, a second process
does. The parent keeps everything that decides -- the walk (its O_NOFOLLOW ``*at``
opens and lstat), dedup (``Store.add_sealed``'s authoritative reserve), packing, trees
and the snapshot; a worker (save_worker.py) gets the walker's *open* descriptors of a
batch of small files (SCM_RIGHTS, so it reads exactly what the walker opened) and
returns each file's blob id and sealed bytes.

Invariants:
- Workers are started fresh (``subprocess``: fork+exec, safe beside threads), inherit
  one socket and no other descriptor (stdin, stdout, stderr: /dev/null -- a worker
  has nothing to tell but its exit status); the keys go over that socket
  (``Sealer.spec()``), never argv, environment or disk. Each runs in a process group
  of its own: the terminal's Ctrl-C reaches the parent, which stops them.
- Requests are pipelined: the walker sends a batch as soon as it is full, to the worker
  with the fewest pending; a reader thread per worker takes its replies, which come in
  the order of its requests, and sets their futures (the saver's packing runs there).
  How many batches are out is bounded by the caller (``FileSaver``'s ``max_inflight``).
- No reply is trusted (``_reply_problem``): it must carry its request's number (each
  request is numbered on its socket), a tag per file sent, an id and
  a blob per SEALED or SEEN one, EMPTY only for a 0-byte file; and the blobs checked
  must unseal (``Sealer.check``: the store's unseal) or hash to their ids and the files'
  sizes. Which blobs are checked: every one of a worker's first reply, then each with
  probability ``1/CHECK_ONE_IN`` (drawn from ``os.urandom``). Re-doing a worker's hash
  and seal costs the parent, the backup's bottleneck, ~6 of its ~65 CPU-us per file
  (+14% of its CPU when every blob is checked); a worker whose replies are wrong in a
  way that repeats (a defect, another version of the code) is caught on its first
  reply, and one wrong blob among many with probability ``1/CHECK_ONE_IN`` each.
  A reply's length is held to what those files can take (``_reply_bound``) before its
  buffer is made. A reply that fails kills the worker and fails the backup like its death, with
  ``WorkerDied`` naming it and what was wrong ("sent a wrong reply (...)"). What no
  check can catch: another file's content of the same size, id and all.
- A worker that dies (kill -9, OOM) fails the batch, and so the backup, with
  ``WorkerDied`` (exit 1, one line naming the pid and the signal): no snapshot is
  written; packs already stored stay indexed or unreferenced, as after any interrupted
  backup (the crash-safety ordering, docs/design.md §9).
- ``close`` shuts every socket (a worker ends at end of file; what was still pending
  fails, its descriptors closed by the saver) and reaps every worker,
  killing one that does not end within ``_REAP_SECONDS``: no orphan after a backup, an
  error or Ctrl-C. A parent killed by SIGKILL closes the sockets too (the kernel does).
- A worker that cannot be started (no processes or descriptors left, no interpreter)
  is no error: the pool makes do with those running, or none (``Unavailable``: the
  saver's thread saves the batch).
- ``CASBACKUP_SAVE_PROCS`` (an integer, 0 = off) overrides the default of
  ``default_procs()``.

Crash point (faults.py): ``save-pool:started``, each time a worker was started and given
its keys (the kill -9 and Ctrl-C tests stop the backup there to find the worker).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..envopts import env_int
from ..errors import CasError, IntegrityError
from ..faults import crash_point
from ..ids import DATA
from ..serde import pack, unpack
from ..store import Sealer
from .save_worker import CAREFUL, EMPTY, HDR, SEALED, SEEN, recv_exact, send_frame

ENV = "CASBACKUP_SAVE_PROCS"
_REAP_SECONDS = 5.0
_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding casbackup/
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from casbackup.ops.save_worker import main; main()")


class WorkerDied(CasError):
    exit_code = 1


class Unavailable(Exception):
    """No worker process could be started (nothing was sent to any)."""


def default_procs() -> int:
    """Worker processes for a backup: ``CASBACKUP_SAVE_PROCS`` when set, else one per
    core but the parent's (at most 4), none on one core (there a process only adds its
    messages). The parent stays the bottleneck: on 50,000 small files it spends ~3
    CPU-s walking and packing against one worker's ~1.7 (benchmarks/README.md, "Wave 7")."""
    n = env_int(ENV, minimum=0, rule="0 (off) or more")
    if n is not None:
        return n
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(0, min(cores - 1, 4))


Reply = tuple[bytes, list[bytes], list[bytes]]  # tags, ids, blobs (save_worker.py)


class _Worker:
    """One worker process, its socket, and the reader thread that answers its requests'
    futures in order (requests are pipelined: a worker never waits for this process to
    take a reply before it gets the next batch)."""

    def __init__(self, spec: bytes, on_death: Callable[[WorkerDied], None]) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, _ROOT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                # a group of its own: a terminal's Ctrl-C (SIGINT to the foreground
                # group) reaches the parent only, also while the worker starts up
                process_group=0)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self.sock = mine
        self._on_death = on_death
        self._send_lock = threading.Lock()  # the socket's send side, and ``_sent``
        self._sent = 0  # requests sent: the next one's number
        self._lock = threading.Lock()  # ``pending`` and ``dead``
        self._sealer = Sealer.from_spec(spec)  # its own: to check this worker's blobs
        self._draw = random.Random(os.urandom(16)).random  # which blobs are checked
        self.pending: deque[tuple[Future[Reply], list[int]]] = deque()  # and their sizes
        self.dead: WorkerDied | None = None
        self._closing = False
        with contextlib.suppress(OSError):  # (dead: the reader finds it so)
            send_frame(mine, spec)
        self._reader = threading.Thread(target=self._read, name="save-pool-reader",
                                        daemon=True)
        self._reader.start()

    def request(self, files: list[tuple[int, int, int, int]]) -> Future[Reply]:
        fut: Future[Reply] = Future()
        # ``pending`` in the order of the sends; the reader takes only ``_lock``, never
        # the send lock, so a send that blocks cannot stop the reader draining replies
        with self._send_lock:
            with self._lock:
                if self.dead is not None:
                    raise self.dead
                self.pending.append((fut, [f[1] for f in files]))
            seq, self._sent = self._sent, self._sent + 1
            with contextlib.suppress(OSError):  # dead: the reader fails every pending future
                send_frame(self.sock, pack([seq, [f[1:] for f in files]]),
                           [f[0] for f in files])
        return fut

    def _read(self) -> None:
        problem: str | None = None
        answered = 0  # replies taken: the number of the request the next one answers
        while True:
            try:
                head = recv_exact(self.sock, HDR.size)
            except (OSError, EOFError):
                break
            with self._lock:
                if not self.pending:
                    if head is None and self._closing:
                        return  # end of file with nothing asked: ``close``
                    if head is not None:
                        problem = "a reply to no request"
                    break  # a reply to nothing asked, or died between batches
                sizes = self.pending[0][1]  # (only this thread takes from ``pending``)
            if head is None:
                break
            (length,) = HDR.unpack(head)
            if length > _reply_bound(sizes):  # before a buffer of that length is made
                problem = (f"a reply of {length} bytes for {len(sizes)} files of "
                           f"{sum(sizes)} bytes")
                break
            try:
                body = recv_exact(self.sock, length)
                if body is None:
                    break  # end of file after the header
                reply = unpack(body, "save worker reply")
            except (OSError, EOFError):
                break
            except CasError as e:  # not msgpack
                problem = str(e)
                break
            problem = _reply_problem(reply, sizes, answered, self._sealer,
                                     None if answered == 0 else self._draw)
            if problem is not None:
                break
            with self._lock:
                fut, _ = self.pending.popleft()
            answered += 1
            tags, ids, blobs, _ = reply
            fut.set_result((tags, ids, blobs))  # (its callbacks run here)
        self.proc.kill()  # (a worker that replied wrongly is not trusted again)
        err = self._died(problem)
        with self._lock:
            self.dead = err
            pending, self.pending = list(self.pending), deque()
        self._on_death(err)
        for fut, _ in pending:
            fut.set_exception(err)

    def _died(self, problem: str | None) -> WorkerDied:
        if problem is not None:
            return WorkerDied(f"a file-saving worker process (pid {self.proc.pid}) sent a "
                              f"wrong reply ({problem}); the backup stopped and no "
                              "snapshot was written")
        try:
            rc = self.proc.wait(_REAP_SECONDS)
        except subprocess.TimeoutExpired:
            rc = None
        how = ("did not end" if rc is None else f"was killed by {signal.Signals(-rc).name}"
               if rc < 0 else f"exited with status {rc}")
        return WorkerDied(f"a file-saving worker process (pid {self.proc.pid}) {how}; "
                          "the backup stopped and no snapshot was written")

    def close(self) -> None:
        """Stop the worker: its socket shut (it ends at end of file; this process's
        reader fails what is still pending), reaped."""
        self._closing = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._reader.join()
        self.sock.close()
        try:
            self.proc.wait(_REAP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


CHECK_ONE_IN = 8  # after a worker's first reply, one blob in this many is re-checked


def _reply_bound(sizes: list[int]) -> int:
    """The most bytes a reply for files of SIZES can take: each file's content sealed
    (zstd only when smaller, so at most its size + 1, plus the AEAD's nonce and tag),
    its id, tag and msgpack headers; a worker claiming more is not believed."""
    return sum(sizes) + len(sizes) * (1 + Sealer.OVERHEAD + 34 + 5 + 1) + 64 + 9  # + the seq


def _reply_problem(reply: Any, sizes: list[int], seq: int, sealer: Sealer,
                   draw: Callable[[], float] | None = None) -> str | None:
    """What is wrong with REPLY to request SEQ, for files of SIZES, or None: its number
    SEQ (not another request's reply, whatever its files' sizes), N tags, an id
    and a blob for each SEALED or SEEN file; EMPTY only for a file of 0 bytes (the
    worker's ``read_small`` gives exactly SIZE bytes or sends the file back CAREFUL);
    a SEEN file's plaintext of its size hashing to its id; a SEALED file's blob
    unsealing to its size and id (the store's own checks) -- every blob's when DRAW is
    None, else each blob's for which DRAW() < 1/CHECK_ONE_IN."""
    n = len(sizes)
    if not (isinstance(reply, list) and len(reply) == 4 and isinstance(reply[0], bytes)
            and len(reply[0]) == n and isinstance(reply[1], list)
            and isinstance(reply[2], list)):
        return f"not [tags, ids, blobs, seq] for {n} files"
    tags, ids, blobs, number = reply
    if type(number) is not int or number != seq:
        return f"it does not answer request {seq} but another"
    k = tags.count(SEALED) + tags.count(SEEN)
    if not (k == len(ids) == len(blobs) and tags.count(EMPTY) + k + tags.count(CAREFUL) == n
            and all(isinstance(b, bytes) and len(b) == 32 for b in ids)
            and all(isinstance(b, bytes) for b in blobs)):
        return f"its tags, ids and blobs do not match for {n} files"
    j = 0  # next id and blob
    for i, (tag, size) in enumerate(zip(tags, sizes, strict=True)):
        if tag == EMPTY:
            if size:
                return f"file {i} of its batch, of {size} bytes, is said to be empty"
        elif tag in (SEEN, SEALED):
            whole = draw is None or draw() < 1 / CHECK_ONE_IN
            if tag == SEEN and (len(blobs[j]) != size
                                or whole and sealer.blob_id(blobs[j]) != ids[j]):
                return f"file {i} of its batch: its content is not its size and id"
            if tag == SEALED and whole:
                try:
                    sealer.check(DATA, ids[j], blobs[j], size)
                except IntegrityError:
                    return (f"file {i} of its batch: its blob does not unseal to its size "
                            "and id")
            j += 1
    return None


class SavePool:
    """``procs`` worker processes, started on first use."""

    def __init__(self, spec: bytes, procs: int) -> None:
        assert procs > 0
        self.procs = procs
        self._spec = spec
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._broken: WorkerDied | None = None  # the first worker's death ends the pool

    def _dead(self, err: WorkerDied) -> None:
        if self._broken is None:
            self._broken = err

    def request(self, files: list[tuple[int, int, int, int]]) -> Future[Reply]:
        """Send FILES (``(fd, size, mtime_ns, ctime_ns)``, each below the chunker's
        minimum) to the worker with the fewest batches pending; the future of its reply
        ``(tags, ids, blobs)`` (save_worker.py), set on that worker's reader thread --
        or ``WorkerDied``. The caller keeps and closes its descriptors. ``Unavailable``
        when no worker could be started at all (the caller saves the batch itself)."""
        if self._broken is not None:
            raise self._broken
        with self._lock:
            if self._closed:
                raise CasError("the save pool is closed")
            if self.procs == 0:
                raise Unavailable
            if len(self._all) < self.procs and all(w.pending for w in self._all):
                try:
                    self._all.append(_Worker(self._spec, self._dead))
                except OSError:  # no process to be had (EAGAIN, EMFILE, no interpreter)
                    self.procs = len(self._all)  # make do with those running
                    if not self._all:
                        raise Unavailable from None
                else:
                    crash_point("save-pool:started")
            w = min(self._all, key=lambda w: len(w.pending))
        return w.request(files)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = self._all, []
        for w in workers:
            w.close()
