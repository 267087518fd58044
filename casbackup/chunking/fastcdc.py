"""FastCDC 2020 via pyfastcdc (Cython, cuts with the GIL released).

Invariants: the gear table is XOR-seeded with the store's 64-bit chunker seed; pyfastcdc's
effective average is ``avg_size + min_size`` (cut-point skipping), recorded as is in the
config. ``cut_stream`` reads with ``readinto`` into a fresh buffer of 2 x ``max_size``
per stream (pyfastcdc zero-fills it); ``cut_reader`` reads into the caller's buffer,
reused from file to file, with the same cuts (a cut depends only on the bytes from the
chunk's start to at most ``max_size`` past it).
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
        """Fill BUF, cut it, keep the tail that may hold a cut short by the end of BUF
        (a chunk starting less than ``max_size`` before it), move that to the front and
        fill again. Every chunk is cut with ``max_size`` bytes (or the end of the
        stream) after its start -- all FastCDC looks at -- so the cuts are
        ``cut_stream``'s."""
        max_size = self.params.max_size
        if len(buf) < 2 * max_size:
            raise ValueError("cut_reader needs a buffer of at least 2 * max_size")
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
            limit = end if eof else end - max_size
            pos = 0
            for chunk in self._cdc().cut_buf(buf[:end]):
                if pos >= limit:
                    break
                yield chunk.data
                pos += chunk.length
            if eof and pos >= end:
                return
            buf[: end - pos] = buf[pos:end]  # memmove: the tail goes to the front
            end -= pos
