"""Scratch: one thread's reusable byte buffer for the byte path (seal, unseal, range reads).

Why: a fresh buffer per blob or per read faults in new pages every time -- with glibc's
mmap threshold at 1 MiB (cli/runtime.py) every big buffer is a new mapping. Measured on
the 1 GB benchmark corpus: 2 GB of page faults for 492 MB of packs in verify, and a third
of a backup's CPU time. Reusing one buffer faults its pages in once.

Invariants: ``view(n)`` is a writable view of exactly ``n`` bytes at the start of the
buffer; its contents are the caller's until the next ``view`` call on the same Scratch.
Growing *replaces* the buffer rather than resizing it, so a view handed out earlier stays
valid (it keeps the old buffer alive) and nobody ever meets ``BufferError``. A Scratch
belongs to one thread at a time (keep them thread-local).
"""

from __future__ import annotations


class Scratch:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def view(self, n: int) -> memoryview:
        if len(self._buf) < n:
            self._buf = bytearray(n + (n >> 3))  # headroom: sizes vary blob to blob
        return memoryview(self._buf)[:n]

    def __len__(self) -> int:
        return len(self._buf)
