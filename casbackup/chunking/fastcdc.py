"""FastCDC 2020 via pyfastcdc (Cython, cuts with the GIL released).

Invariants: the gear table is XOR-seeded with the store's 64-bit chunker seed; pyfastcdc's
effective average is ``avg_size + min_size`` (cut-point skipping), recorded as is in the
config. ``cut_stream`` reads with ``readinto`` into a fresh buffer of 2 x ``max_size``
per stream (pyfastcdc zero-fills it); ``cut_reader`` reads into the caller's buffer
(``max_size`` + 2 MiB, reused from file to file) and makes the same cuts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

import pyfastcdc

from . import ChunkerParams


class FastCDCChunker:
    def __init__(self, params: ChunkerParams) -> None:
        self.params = params
        # pyfastcdc shifts the seed left by one inside a uint64: keep it to 63 bits.
        self._seed = params.seed & 0x7FFF_FFFF_FFFF_FFFF

    def _cdc(self) -> pyfastcdc.FastCDC:
        # A FastCDC object is not safe to share between threads; it is cheap to make.
        p = self.params
        return pyfastcdc.FastCDC(
            p.avg_size, min_size=p.min_size, max_size=p.max_size, seed=self._seed
        )

    def cut_stream(self, f: BinaryIO) -> Iterator[memoryview]:
        for chunk in self._cdc().cut_stream(f):  # a fresh 2 x max_size buffer per stream
            yield chunk.data

    def cut_reader(self, readinto: Callable[[memoryview], int | None],
                   buf: memoryview) -> Iterator[memoryview]:
        """Fill BUF, cut it, move the tail that may still change with more data to the
        front and fill again. A cut point found inside the window is the stream's:
        FastCDC scans from the chunk's start and stops at the first match, and with less
        data it only ever moves its normalisation point to the window's end, where the
        harder mask is the one used below the point anyway. Only a chunk that ran into
        the window's end without a match (and had less than ``max_size`` to look at)
        may be cut differently, so it is cut again after a refill. BUF therefore needs
        ``max_size`` plus room to make progress, not twice ``max_size``."""
        p = self.params
        if len(buf) < p.max_size + p.min_size:
            raise ValueError("cut_reader needs a buffer of at least max_size + min_size")
        end, eof = 0, False
        while True:
            while not eof and end < len(buf):
                got = readinto(buf[end:])
                if not got:
                    eof = True
                else:
                    end += got
            if end == 0:
                return
            pos = 0
            for chunk in self._cdc().cut_buf(buf[:end]):
                avail = end - pos  # bytes pyfastcdc could see from this chunk's start
                if not eof and avail < p.max_size and chunk.length >= avail:
                    break  # cut by the window's end, not found: cut it again with more
                yield chunk.data
                pos += chunk.length
            if eof and pos >= end:
                return
            buf[: end - pos] = buf[pos:end]  # memmove: the tail goes to the front
            end -= pos
