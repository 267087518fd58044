"""casbackup/lru.py against a model: after any sequence of puts and gets the LRU holds
exactly the most recently used entries that fit in its weight (and always the newest)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.lru import LRU

_ops = st.lists(st.tuples(st.booleans(), st.integers(0, 9), st.integers(1, 40)), max_size=60)


@settings(max_examples=200)
@given(st.integers(1, 100), _ops)
def test_the_lru_keeps_the_most_recently_used_that_fit(bound: int, ops: list) -> None:  # type: ignore[type-arg]
    lru: LRU[int, bytes] = LRU(bound, len)
    order: list[int] = []  # the model: keys, least recently used first
    values: dict[int, bytes] = {}
    for is_put, key, size in ops:
        if is_put:
            values[key] = bytes(size)
            lru.put(key, values[key])
            order = [k for k in order if k != key] + [key]
            while sum(len(values[k]) for k in order) > bound and len(order) > 1:
                del values[order.pop(0)]
        else:
            got = lru.get(key)
            assert got == (values[key] if key in order else None)
            if key in order:
                order = [k for k in order if k != key] + [key]
        assert lru.held == sum(len(values[k]) for k in order) and len(lru) == len(order)
        assert all(k in lru for k in order)
    lru.clear()
    assert lru.held == 0 and len(lru) == 0
