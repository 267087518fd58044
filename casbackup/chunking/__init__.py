"""Content-defined chunkers behind a small registry, resolved by the name in the config.

Invariants: a chunker is deterministic for (algorithm, params, seed): the same bytes
always cut at the same boundaries, so the same content dedups across files, hosts and
time. The seed is per store, so boundaries do not fingerprint content across stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from ..errors import UsageError


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    algorithm: str = "fastcdc2020"
    min_size: int = 256 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 8 * 1024 * 1024
    seed: int = 0


class Chunker(Protocol):
    params: ChunkerParams

    def cut_stream(self, f: BinaryIO) -> Iterator[memoryview]:
        """Yield the chunks of ``f``; each view is valid only until the next is yielded."""
        ...

    def cut_reader(self, readinto: Callable[[memoryview], int | None],
                   buf: memoryview) -> Iterator[memoryview]:
        """``cut_stream`` reading with READINTO into the caller's BUF (at least
        ``max_size + min_size`` bytes, reused across files); the same cuts, as views of
        BUF."""
        ...


def get_chunker(params: ChunkerParams) -> Chunker:
    if params.algorithm == "fastcdc2020":
        from .fastcdc import FastCDCChunker

        return FastCDCChunker(params)
    raise UsageError(f"unknown chunker {params.algorithm!r}")
