"""Range reads of a mount's file contents (casbackup/mount/content.py): any read returns
exactly the bytes of the file's range, fetches only the blobs the range covers (each at
most once while cached), and the cache stays within its bound."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.errors import IntegrityError
from casbackup.mount.content import BlobCache, Content


class Blobs:
    def __init__(self, datas: list[bytes]) -> None:
        self.by_id = {b"%032d" % i: d for i, d in enumerate(datas)}
        self.fetches: list[bytes] = []
        self.mu = threading.Lock()

    def fetch(self, bid: bytes) -> bytes:
        with self.mu:
            self.fetches.append(bid)
        return self.by_id[bid]


_blobs = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=12)


@settings(max_examples=300)
@given(_blobs, st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 700)), max_size=8))
def test_a_read_returns_the_range_and_fetches_only_the_blobs_it_covers(
        datas: list[bytes], reads: list[tuple[int, int]]) -> None:
    blobs = Blobs(datas)
    content = Content(BlobCache(blobs.fetch, max_bytes=1 << 30),
                      lambda b: len(blobs.by_id[b]), read_ahead=False)
    ids = list(blobs.by_id)
    whole = b"".join(datas)
    h = content.open(ids, len(whole), "f")
    starts = h.starts
    for off, n in reads:
        before = set(blobs.fetches)
        assert content.read(h, off, n) == whole[off:off + n]
        end = min(off + n, len(whole))
        covered = {ids[i] for i in range(len(ids))  # (an empty range covers none)
                   if off < end and starts[i] < end and starts[i + 1] > off}
        assert set(blobs.fetches) - before <= covered
        assert covered <= set(blobs.fetches)
    assert len(blobs.fetches) == len(set(blobs.fetches))  # each blob fetched once


def test_the_cache_keeps_at_most_its_bound() -> None:
    blobs = Blobs([bytes([i]) * 1000 for i in range(50)])
    cache = BlobCache(blobs.fetch, max_bytes=5000)
    content = Content(cache, lambda b: 1000, read_ahead=False)
    h = content.open(list(blobs.by_id), 50_000, "f")
    for off in range(0, 50_000, 700):
        assert content.read(h, off, 700) == b"".join(blobs.by_id.values())[off:off + 700]
    assert cache.held <= 5000
    assert len(blobs.fetches) == 50


def test_a_sequential_reader_gets_the_next_blob_read_ahead_a_random_one_does_not() -> None:
    blobs = Blobs([bytes([i]) * (1 << 20) for i in range(6)])
    content = Content(BlobCache(blobs.fetch), lambda b: 1 << 20)
    ids = list(blobs.by_id)
    h = content.open(ids, 6 << 20, "f")
    content.read(h, (3 << 20) + 5, 4096)  # random: only blob 3
    content.read(h, (5 << 20) + 7, 4096)  # random: only blob 5
    assert blobs.fetches == [ids[3], ids[5]]
    h2 = content.open(ids, 6 << 20, "g")
    for off in range(0, 1 << 20, 128 << 10):  # 1 MiB in a row
        content.read(h2, off, 128 << 10)
    for _ in range(500):  # the read-ahead runs on a thread
        if len(blobs.fetches) >= 4:
            break
        threading.Event().wait(0.01)
    assert blobs.fetches[2:] == [ids[0], ids[1]]
    content.close()


def test_concurrent_readers_of_one_blob_fetch_it_once() -> None:
    gate = threading.Event()
    calls: list[bytes] = []

    def slow(bid: bytes) -> bytes:
        calls.append(bid)
        gate.wait(5)
        return b"x" * 10

    cache = BlobCache(slow)
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(cache.get(b"k"))) for _ in range(8)]
    for t in threads:
        t.start()
    threading.Event().wait(0.2)
    gate.set()
    for t in threads:
        t.join()
    assert calls == [b"k"] and out == [b"x" * 10] * 8


def test_blob_lengths_that_do_not_add_up_to_the_size_are_refused() -> None:
    content = Content(BlobCache(lambda b: b""), lambda b: 10, read_ahead=False)
    with pytest.raises(IntegrityError, match="hold 20 bytes, the tree says 21"):
        content.open([b"a", b"b"], 21, "f")
