"""Warm the kernel's inode cache ahead of the backup walker, from a child process.

The walker stats entries one at a time; on a cold cache every stat can wait for the
disk, so the walk is latency-bound (measured on the 20,005-file benchmark corpus: a bare
walk takes 0.05 s warm and 0.21 s cold). A prefetcher that walks the same tree ahead of
it takes those waits instead. It runs in a forked child, not in threads: prefetch
threads made the cold walk *slower* (0.26–0.30 s), because every stat they make hands
the GIL back and forth with the walker; a child process has a GIL of its own (the
walker with a child prefetching: 0.29 s cold vs 0.40 s alone, 0.22 s warm).

The child also sums the sizes of the regular files it sees and reports them
(``on_totals``), which gives the progress bar its total and ETA at no extra cost.

Invariants: the prefetcher only *reads* metadata and never affects what is backed up —
its results are thrown away except the totals; every error in the child is ignored (the
walker reports its own); it never descends into directories the excluder excludes; the
child touches no lock, buffer or file of the parent and leaves with ``os._exit``;
``stop`` kills and reaps it, so no child outlives the backup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from collections.abc import Callable

from .exclude import Excluder


def _walk(roots: list[bytes], excluder: Excluder) -> tuple[int, int]:
    """Stat every entry below ROOTS, depth-first; (bytes, files) of the regular files."""
    size = files = 0
    stack: list[tuple[bytes, bytes]] = [(r, b"") for r in reversed(roots)]
    while stack:
        path, rel = stack.pop()
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
                if not excluder.excluded(crel, True, e.path):
                    subdirs.append((e.path, crel))
            elif stat.S_ISREG(st.st_mode) and not excluder.excluded(crel, False, e.path,
                                                                  st.st_size):
                size += st.st_size
                files += 1
        stack.extend(sorted(subdirs, reverse=True))  # the walker's order: sorted, depth first
    return size, files


class Prefetcher:
    def __init__(self, roots: list[bytes], excluder: Excluder,
                 on_totals: Callable[[int, int], None] | None = None) -> None:
        self._roots = roots
        self._excluder = excluder
        self._on_totals = on_totals
        self._pid: int | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Prefetcher:
        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return self  # no prefetch: the walk is only slower
        if pid == 0:  # the child
            try:
                os.close(r)
                size, files = _walk(self._roots, self._excluder)
                os.write(w, b"%d %d\n" % (size, files))
            finally:
                os._exit(0)
        os.close(w)
        self._pid = pid
        self._reader = threading.Thread(target=self._read_totals, args=(r,), daemon=True,
                                        name="prefetch-totals")
        self._reader.start()
        return self

    def _read_totals(self, r: int) -> None:
        with os.fdopen(r, "rb") as f:
            line = f.readline().split()
        if len(line) == 2 and self._on_totals is not None:
            self._on_totals(int(line[0]), int(line[1]))

    def stop(self) -> None:
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if self._reader is not None:
            self._reader.join()

    def __enter__(self) -> Prefetcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
