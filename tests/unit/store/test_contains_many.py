"""The batch membership check (``CompactFile.contains_many``, ``StoreIndex.contains_many``)
answers exactly as one ``in`` per id: shared prefixes across block boundaries, duplicate
queries, excluded packs, resident (spilled) files and ids of the wrong length; and it
reads a few times per touched block, not twice per id (counted)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.store import compactindex
from casbackup.store.compactindex import columns_from_packs, write_anonymous
from casbackup.store.index import Index, PackInfo, StoreIndex
from casbackup.store.pack import PackEntry
from tests.helpers import count_preads


def _name(i: int, salt: str) -> str:
    import blake3

    return blake3.blake3(f"{salt}{i}".encode()).hexdigest()


# few prefixes, few rests: prefix runs longer than a (shrunk) block, and near misses
ids = st.builds(lambda p, r: bytes([p]) * 8 + bytes([r]) * 24,
                st.integers(0, 9), st.integers(0, 5))
packs = st.lists(st.lists(ids, max_size=12), max_size=8)


@pytest.fixture(autouse=True)
def small_blocks() -> Iterator[None]:
    """Blocks of 4 records, so a few dozen records span many blocks and fence ranges."""
    saved, compactindex.BLOCK = compactindex.BLOCK, 4
    try:
        yield
    finally:
        compactindex.BLOCK = saved


def _infos(content: list[list[bytes]], salt: str) -> list[PackInfo]:
    return [PackInfo(_name(p, salt), "data", 10_000,
                     [PackEntry("data", b, i * 10, 10, 9) for i, b in enumerate(blobs)])
            for p, blobs in enumerate(content)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(content=packs, more=packs, excluded=st.sets(st.integers(0, 7)),
       queries=st.lists(st.one_of(ids, st.binary(max_size=40)), max_size=40),
       resident=st.booleans())
def test_equal_to_one_lookup_per_id(content: list[list[bytes]], more: list[list[bytes]],
                                    excluded: set[int], queries: list[bytes],
                                    resident: bool) -> None:
    infos = _infos(content, "a")
    f = write_anonymous(columns_from_packs(["00" * 32], [
        (p.name, p.kind, p.size, p.entries) for p in infos]))
    if resident:
        f.hold_prefixes()
    f.set_excluded(_name(i, "a") for i in excluded)
    universe = queries + [b for blobs in content + more for b in blobs]
    assert f.contains_many(universe) == [f.contains(b) for b in universe]
    # the store's index: the dicts (MORE, not spilled) above a file
    idx = StoreIndex()
    idx.set_bases([f], ["00" * 32])
    for p in _infos(more, "b"):
        idx.add_pack(p)
    assert idx.contains_many(universe) == [b in idx for b in universe]
    plain = Index()
    for p in _infos(more, "b"):
        plain.add_pack(p)
    assert plain.contains_many(universe) == [b in plain for b in universe]
    f.close()


def test_reads_per_block_not_per_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 present ids of a 3,000-record file (blocks of 4 here: 750 blocks): one
    read of prefixes and one of records per touched block at most (plus the blocks'
    first checks), where one ``contains`` per id reads twice per id."""
    import blake3

    blobs = [blake3.blake3(b"%d" % i).digest() for i in range(3000)]
    info = PackInfo(_name(0, "c"), "data", 10**6,
                    [PackEntry("data", b, i, 1, 1) for i, b in enumerate(blobs)])
    f = write_anonymous(columns_from_packs(["11" * 32], [
        (info.name, info.kind, info.size, info.entries)]))
    f.check_all()
    calls = count_preads(monkeypatch)
    absent = [os.urandom(32) for _ in range(500)]
    assert f.contains_many(blobs + absent) == [True] * 3000 + [False] * 500
    assert calls[0] <= 2 * 750 + 500  # (an absent id may fall in a range of its own)
    calls[0] = 0
    assert all(f.contains(b) for b in blobs)
    assert calls[0] >= 2 * 3000
