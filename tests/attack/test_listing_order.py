"""``RetryingBackend.list`` over an endpoint whose listings are out of order or repeat
keys (a non-conforming S3 clone; the forwarding-proxy test in test_hostile_listing.py
runs the commands through one). Every key the endpoint lists reaches the caller -- the
resume rule (skip keys up to the last one given, for sorted listings) must not drop a
key of a listing that is not sorted: before the fix a descending listing came out as its
first key alone, which hid packs, index objects and lock objects from gc. A listing
that fails part-way is resumed only if it was sorted so far; else its failure is raised
(which keys it gave is unknown), never an incomplete answer.
"""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from casbackup.backends.base import ObjectInfo
from casbackup.backends.memory import MemoryBackend
from casbackup.backends.retry import RetryingBackend
from casbackup.errors import TransientError


class _Shuffled(MemoryBackend):
    """Lists the keys in ORDER (indices into the sorted keys); the first listing fails
    with a TransientError after FAIL_AFTER keys when set."""

    def __init__(self, order: list[int], fail_after: int | None = None) -> None:
        super().__init__()
        self.order, self.fail_after, self.calls = order, fail_after, 0

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.calls += 1
        infos = sorted(super().list(prefix), key=lambda i: i.key)
        for n, k in enumerate(self.order):
            if self.calls == 1 and n == self.fail_after:
                raise TransientError("connection reset", prefix)
            yield infos[k]


def _keys(n: int) -> list[str]:
    return [f"locks/{i:04x}" for i in range(n)]


@given(st.lists(st.integers(0, 19), min_size=1, max_size=40))
def test_every_listed_key_reaches_the_caller(order: list[int]) -> None:
    inner = _Shuffled(order)
    for k in _keys(20):
        inner.put(k, b"x")
    got = [i.key for i in RetryingBackend(inner, sleep=lambda _s: None).list("locks/")]
    assert set(got) == {_keys(20)[k] for k in order}


def test_a_descending_listing_is_whole() -> None:
    inner = _Shuffled(list(range(19, -1, -1)))
    for k in _keys(20):
        inner.put(k, b"x")
    got = [i.key for i in RetryingBackend(inner, sleep=lambda _s: None).list("locks/")]
    assert got == _keys(20)[::-1]


@given(st.permutations(list(range(12))), st.integers(1, 11))
def test_a_failed_listing_is_whole_or_raises(order: list[int], fail_after: int) -> None:
    inner = _Shuffled(order, fail_after)
    for k in _keys(12):
        inner.put(k, b"x")
    got: list[str] = []
    try:
        got.extend(i.key for i in RetryingBackend(inner, sleep=lambda _s: None).list("locks/"))
    except TransientError as e:
        assert order != sorted(order), "a sorted listing resumes"
        assert "out of order" in str(e)
        return
    assert sorted(got) == _keys(12) and len(got) == 12


def test_a_sorted_listing_still_resumes_once_each() -> None:
    inner = _Shuffled(list(range(12)), 5)
    for k in _keys(12):
        inner.put(k, b"x")
    got = [i.key for i in RetryingBackend(inner, sleep=lambda _s: None).list("locks/")]
    assert got == _keys(12) and inner.calls == 2
