"""The chunker is deterministic per seed, and the seed moves boundaries."""

from __future__ import annotations

import io
import os

import pytest

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


def test_cut_reader_cuts_like_cut_stream() -> None:
    """The file saver cuts through cut_reader with a reused buffer, stdin goes through
    cut_stream: both must give the same chunks, or dedup between them breaks -- also when
    reads come back short and the buffer is refilled many times."""
    import random

    rng = random.Random(7)
    ch = get_chunker(ChunkerParams(min_size=4096, avg_size=16384, max_size=65536, seed=99))
    blocks = [rng.randbytes(100_000), bytes(300_000), rng.randbytes(250_000) * 2, b"ab" * 9000]
    data = b"".join(blocks)
    streamed = [bytes(c) for c in ch.cut_stream(io.BytesIO(data))]
    assert len(streamed) > 10 and b"".join(streamed) == data
    cases = [(65536 + 4096, None), (65536 + 4097, 777), (65536 + 20000, None),
             (2 * 65536, None), (3 * 65536 + 17, 1000), (len(data) + 1, None)]
    for bufsize, step in cases:
        src = io.BytesIO(data)

        def readinto(mv: memoryview, src: io.BytesIO = src, step: int | None = step) -> int:
            return src.readinto(mv[:step] if step else mv)

        buf = memoryview(bytearray(bufsize))
        assert [bytes(c) for c in ch.cut_reader(readinto, buf)] == streamed, bufsize
    assert list(ch.cut_reader(io.BytesIO(b"").readinto, memoryview(bytearray(1 << 17)))) == []
    with pytest.raises(ValueError):
        list(ch.cut_reader(io.BytesIO(data).readinto, memoryview(bytearray(65536))))


def test_cut_reader_matches_cut_stream_on_random_mixes() -> None:
    """Many random mixes of random, zero and low-entropy runs, random buffer sizes from
    the minimum up, random short reads: always cut_stream's chunks."""
    import random

    ch = get_chunker(ChunkerParams(min_size=2048, avg_size=8192, max_size=32768, seed=5))
    for seed in range(40):
        rng = random.Random(seed)
        parts = []
        for _ in range(rng.randint(1, 12)):
            n = rng.randint(0, 90_000)
            parts.append(rng.choice([rng.randbytes(n), bytes(n), b"xy" * (n // 2)]))
        data = b"".join(parts)
        streamed = [bytes(c) for c in ch.cut_stream(io.BytesIO(data))]
        src = io.BytesIO(data)
        step = rng.choice([None, rng.randint(1, 50_000)])

        def readinto(mv: memoryview, src: io.BytesIO = src, step: int | None = step) -> int:
            return src.readinto(mv[:step] if step else mv)

        buf = memoryview(bytearray(rng.randint(32768 + 2048, 3 * 32768)))
        assert [bytes(c) for c in ch.cut_reader(readinto, buf)] == streamed, seed
