"""Warm the kernel's inode cache ahead of the backup walker, from a child process.

The walker stats entries one at a time; on a cold cache every stat can wait for the
disk, so the walk is latency-bound (measured on the 20,005-file benchmark corpus: a bare
walk takes 0.05 s warm and 0.21 s cold). A prefetcher that walks the same tree ahead of
it takes those waits instead. It runs in a child process, not in threads: prefetch
threads made the cold walk *slower* (0.26–0.30 s), because every stat they make hands
the GIL back and forth with the walker; a child process has a GIL of its own (the
walker with a child prefetching: 0.29 s cold vs 0.40 s alone, 0.22 s warm).

The child is a fresh interpreter (``python -m casbackup.source.prefetch``, started with
``subprocess``: fork+exec, which is safe from any thread — a bare ``fork`` of a process
with threads, the daemon's or the archiver's own, could inherit a lock held by another
thread), given its job as a pickle on stdin. It also sums the sizes of the regular
files it sees and reports them (``on_totals``), which gives the progress bar its total
and ETA at no extra cost.

The child costs a second walk (~0.24 CPU-s of a ~1.15 CPU-s unchanged re-backup of
~20k files, its interpreter start ~50-70 ms of it), which buys nothing when the tree is
already in the inode cache. So the child is started only when its work is wanted:
- someone uses the totals (``on_totals`` given: the CLI passes it only when a progress
  bar is drawn or ``--json`` status lines are written, ``Observer.wants_totals``): the
  child is always started, warm or cold;
- otherwise a *probe* first walks, in this thread, the start of the walk the walker will
  make (the first ``PROBE_DIRS`` directories or ``PROBE_ENTRIES`` entries, same order,
  same rules), and the child is started only if that probe was *blocked* (waiting for
  the disk) longer than ``PROBE_BLOCKED_NS``; it stops at once when that is reached, so
  on a cold tree the child starts late by at most that much. The probe's work is not
  wasted: the inodes it read are warm for the walker.
Blocked time is wall time minus this thread's CPU time (``time.thread_time_ns``) minus
its run-queue wait (the second field of ``/proc/thread-self/schedstat``): on a loaded
machine wall time includes the wait for a CPU, which would make a warm tree look cold.
(The first field of schedstat, on-CPU ns, is not used: for the running thread it lags by
up to a scheduler tick, i.e. several ms; ``thread_time`` is exact.) The three clocks are
read as one consistent snapshot (again while the run-queue wait changed between the
reads: a preemption between them put up to ~14 ms in the wall delta and not the wait's).
And a thread that never went to sleep (its voluntary context switches,
``getrusage(RUSAGE_THREAD)``, did not change) was not blocked, whatever the clocks say
(a VM's steal time, interrupts). Without schedstat the run-queue wait counts as blocked
(more children started, never fewer); so does a wait for the GIL in a threaded caller
(the daemon).

Invariants: the prefetcher (child and probe) only *reads* metadata and never affects what
is backed up — its results are thrown away except the totals and the probe's verdict;
every error in it is ignored (the walker reports its own); it follows the walker's
rules: it never descends into a directory the excluder excludes, one whose contents the
walker leaves out (a cache tag or ``--exclude-if-present`` marker:
``Excluder.skips_contents``; another filesystem with ``one_file_system``; a directory of
``skip_dirs``, the store itself), and counts only the regular files the excluder keeps;
``stop`` kills and reaps the child, so none outlives the backup.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from .exclude import Excluder

PROBE_DIRS = 32  # the probe reads at most this many directories
PROBE_ENTRIES = 4096  # ... and stats at most this many entries (a huge flat directory)
PROBE_BLOCKED_NS = 2_000_000  # blocked longer than this: the tree is cold


def _walk(roots: list[bytes], excluder: Excluder, one_file_system: bool = False,
          skip_dirs: frozenset[tuple[int, int]] = frozenset(),
          stop: Callable[[bool], bool] | None = None) -> tuple[int, int]:
    """Stat every entry below ROOTS the walker would visit, depth-first; (bytes, files)
    of the regular files it would save. ``stop(listed)``, if given, is asked after each
    directory listing (True) and each entry's stat (False); it ends the walk early by
    returning True (the sums are then partial)."""
    size = files = 0
    stack: list[tuple[bytes, bytes, int]] = []
    for r in reversed(roots):
        with contextlib.suppress(OSError):
            stack.append((r, b"", os.lstat(r).st_dev))
    while stack:
        path, rel, dev = stack.pop()
        if excluder.skips_contents(path):
            continue
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        if stop is not None and stop(True):
            return size, files
        subdirs = []
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stop is not None and stop(False):
                return size, files
            crel = rel + b"/" + e.name if rel else e.name
            if stat.S_ISDIR(st.st_mode):
                if (not excluder.excluded(crel, True, e.path)
                        and (st.st_dev, st.st_ino) not in skip_dirs
                        and not (one_file_system and st.st_dev != dev)):
                    subdirs.append((e.path, crel, dev))
            elif stat.S_ISREG(st.st_mode) and not excluder.excluded(crel, False, e.path,
                                                                  st.st_size):
                size += st.st_size
                files += 1
        stack.extend(sorted(subdirs, reverse=True))  # the walker's order: sorted, depth first
    return size, files


def _voluntary_switches() -> int:
    """How often this thread went to sleep (blocked); -1 where that is not known."""
    try:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    except (AttributeError, OSError):
        return -1


class _Probe:
    """The ``stop`` of a probe walk: ends it after PROBE_DIRS listings or PROBE_ENTRIES
    stats, or as soon as the thread was blocked longer than PROBE_BLOCKED_NS (then
    ``cold``). Clocks are read every 16 calls and at each listing."""

    def __init__(self) -> None:
        self.cold = False
        self._dirs = self._entries = 0
        try:
            self._schedstat: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._schedstat = None
        self._sleeps0 = _voluntary_switches()
        self._wait0, self._wall0, self._cpu0 = self._clocks()

    def _run_queue_ns(self) -> int:
        """ns this thread has waited on a run queue (0 without schedstat)."""
        if self._schedstat is None:
            return 0
        try:
            return int(os.pread(self._schedstat, 128, 0).split()[1])
        except (OSError, ValueError, IndexError):
            return 0

    def _clocks(self) -> tuple[int, int, int]:
        """(run-queue wait, wall, CPU) ns, consistent: read again while a wait for a CPU
        fell between the reads (it would be in one delta and not the other)."""
        for _ in range(4):
            wait = self._run_queue_ns()
            wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
            if self._run_queue_ns() == wait:
                break
        return wait, wall, cpu

    def blocked_ns(self) -> int:
        idle = (time.perf_counter_ns() - self._wall0) - (time.thread_time_ns() - self._cpu0)
        if idle <= PROBE_BLOCKED_NS:  # an upper bound: no need to read schedstat
            return idle
        if self._sleeps0 >= 0 and _voluntary_switches() == self._sleeps0:
            return 0  # it never slept: the gap is steal or interrupt time, not a wait
        wait, wall, cpu = self._clocks()
        return (wall - self._wall0) - (cpu - self._cpu0) - (wait - self._wait0)

    def __call__(self, listed: bool) -> bool:
        if listed:
            self._dirs += 1
        else:
            self._entries += 1
        if (listed or self._entries % 16 == 0) and self.blocked_ns() > PROBE_BLOCKED_NS:
            self.cold = True
            return True
        return self._dirs >= PROBE_DIRS or self._entries >= PROBE_ENTRIES

    def close(self) -> None:
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None


def tree_is_cold(roots: list[bytes], excluder: Excluder, one_file_system: bool = False,
                 skip_dirs: frozenset[tuple[int, int]] = frozenset()) -> bool:
    """Walk the start of the walker's walk in this thread (warming it); was it blocked
    longer than PROBE_BLOCKED_NS (the inodes were not in the cache)?"""
    probe = _Probe()
    try:
        _walk(roots, excluder, one_file_system, skip_dirs, stop=probe)
        if not probe.cold:  # a short tree: the last stretch is checked too
            probe.cold = probe.blocked_ns() > PROBE_BLOCKED_NS
        return probe.cold
    finally:
        probe.close()


class Prefetcher:
    """``start`` starts the child if ON_TOTALS is given, else only if ``tree_is_cold``."""

    def __init__(self, roots: list[bytes], excluder: Excluder,
                 on_totals: Callable[[int, int], None] | None = None, *,
                 one_file_system: bool = False,
                 skip_dirs: frozenset[tuple[int, int]] = frozenset()) -> None:
        self._job = (roots, excluder, one_file_system, skip_dirs)
        self._on_totals = on_totals
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Prefetcher:
        if self._on_totals is None and not tree_is_cold(*self._job):
            return self  # warm and nobody waits for totals: the walker needs no help
        job = pickle.dumps(self._job)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "casbackup.source.prefetch"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        except OSError:
            return self  # no prefetch: the walk is only slower
        self._proc = proc
        self._reader = threading.Thread(target=self._talk, args=(proc, job), daemon=True,
                                        name="prefetch-totals")
        self._reader.start()
        return self

    def _talk(self, proc: subprocess.Popen[bytes], job: bytes) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            with proc.stdin:
                proc.stdin.write(job)
            line = proc.stdout.readline().split()
        except OSError:  # killed by stop() meanwhile
            return
        finally:
            proc.stdout.close()
        if len(line) == 2 and self._on_totals is not None:
            self._on_totals(int(line[0]), int(line[1]))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        if self._reader is not None:
            self._reader.join()

    def __enter__(self) -> Prefetcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _main() -> None:
    """The child: read the job from stdin, walk, print ``bytes files``."""
    roots, excluder, one_fs, skip = pickle.loads(sys.stdin.buffer.read())
    size, files = _walk(roots, excluder, one_fs, skip)
    sys.stdout.write(f"{size} {files}\n")


if __name__ == "__main__":
    with contextlib.suppress(Exception, KeyboardInterrupt):
        _main()
