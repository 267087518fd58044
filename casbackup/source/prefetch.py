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

Invariants: the prefetcher only *reads* metadata and never affects what is backed up —
its results are thrown away except the totals; every error in the child is ignored (the
walker reports its own); it follows the walker's rules: it never descends into a
directory the excluder excludes, one whose contents the walker leaves out (a cache tag
or ``--exclude-if-present`` marker: ``Excluder.skips_contents``; another filesystem with
``one_file_system``; a directory of ``skip_dirs``, the store itself), and counts only
the regular files the excluder keeps; ``stop`` kills and reaps the child, so none
outlives the backup.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import stat
import subprocess
import sys
import threading
from collections.abc import Callable

from .exclude import Excluder


def _walk(roots: list[bytes], excluder: Excluder, one_file_system: bool = False,
          skip_dirs: frozenset[tuple[int, int]] = frozenset()) -> tuple[int, int]:
    """Stat every entry below ROOTS the walker would visit, depth-first; (bytes, files)
    of the regular files it would save."""
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
        subdirs = []
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
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


class Prefetcher:
    def __init__(self, roots: list[bytes], excluder: Excluder,
                 on_totals: Callable[[int, int], None] | None = None, *,
                 one_file_system: bool = False,
                 skip_dirs: frozenset[tuple[int, int]] = frozenset()) -> None:
        self._job = (roots, excluder, one_file_system, skip_dirs)
        self._on_totals = on_totals
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Prefetcher:
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
