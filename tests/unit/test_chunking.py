"""The chunker is deterministic per seed, and the seed moves boundaries."""

from __future__ import annotations

import io
import os

from casbackup.chunking import ChunkerParams, get_chunker


def _cuts(seed: int, data: bytes) -> list[int]:
    ch = get_chunker(ChunkerParams(min_size=16 << 10, avg_size=64 << 10, max_size=256 << 10,
                                   seed=seed))
    return [len(c) for c in ch.cut_stream(io.BytesIO(data))]


def test_chunker_deterministic_and_seeded() -> None:
    data = os.urandom(4 << 20)
    a = _cuts(12345, data)
    assert a == _cuts(12345, data)
    assert sum(a) == len(data)
    assert a != _cuts(99999, data)
    assert all(16 << 10 <= n <= 256 << 10 for n in a[:-1])


def test_insert_in_middle_keeps_most_chunks() -> None:
    data = os.urandom(4 << 20)
    a = _cuts(7, data)
    b = _cuts(7, data[: 2 << 20] + b"inserted" + data[2 << 20 :])
    assert len(set(a) & set(b)) >= len(a) - 3


def test_top_bit_seed_accepted() -> None:
    assert sum(_cuts(2**64 - 1, b"x" * 100_000)) == 100_000
