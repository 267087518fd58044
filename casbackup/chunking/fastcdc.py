"""FastCDC 2020 via pyfastcdc (Cython, cuts with the GIL released).

Invariants: the gear table is XOR-seeded with the store's 64-bit chunker seed; pyfastcdc's
effective average is ``avg_size + min_size`` (cut-point skipping), recorded as is in the
config. ``cut_stream`` reads with ``readinto`` into one reused buffer, so memory per
stream is bounded by a few ``max_size`` buffers.
"""

from __future__ import annotations

from collections.abc import Iterator
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
        for chunk in self._cdc().cut_stream(f):
            yield chunk.data
