"""Process-level tuning applied once when the CLI starts.

GIL switch interval: the walker thread makes ~3 syscalls per file (stat, listxattr,
open), each releasing the GIL; getting it back from a file-saver thread waits up to the
switch interval (5 ms by default). At 1 ms the 20k-file tree backs up in 1.21 s instead
of 1.46 s and the whole 1 GB corpus in 2.14 s instead of 2.36 s (warm cache, A/B). The
savers spend most of their time in C with the GIL released, so they lose nothing.

glibc's malloc raises its mmap threshold dynamically after large blocks are freed, so
the ~1-8 MiB chunk and pack buffers of a backup then come from per-thread heap arenas,
fragment them and are never returned: peak RSS measured 249 MB on the 1 GB benchmark
corpus. A fixed 1 MiB threshold (which also disables the dynamic adjustment) and two
arenas bring that to 145 MB at no measurable speed cost. Invariant: this only changes
where glibc puts allocations, never program behaviour; on other C libraries it is a no-op.
It starts no process and reads no file (it runs before every command: the fixed cost).

The cyclic garbage collector's first generation runs every 700 net allocations by
default; a backup or restore allocates a few objects per file and per tree node, nearly
none of them in cycles (reference counting frees them), so each collection only walks
the young objects to find nothing. A threshold of 50,000 (generations 2 and 3 at 20 of
the one below) cut 2.6 % of the instructions of a 30,000-small-file first backup
(11.26 G -> 10.97 G) and of its restore (14.67 G -> 14.29 G), peak RSS unchanged
(71.5 MB; benchmarks/README.md, "Wave 6: the cyclic collector's threshold"). Invariant:
cycles are still collected, only less often.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_process() -> None:
    sys.setswitchinterval(0.001)
    gc.set_threshold(50_000, 20, 20)
    tune_malloc()


def tune_malloc() -> None:
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_ARENA_MAX"):
        return  # the user chose; glibc read the environment already
    try:
        # the symbols the process already has (libc among them): not
        # ctypes.util.find_library, which runs `ldconfig -p` in a child on every command
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    mallopt(_M_ARENA_MAX, 2)
