"""RetryingBackend and FaultyBackend, over MemoryBackend (no I/O, no real sleeping)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from casbackup.backends.faulty import Crash, Fault, FaultyBackend
from casbackup.backends.local import LocalBackend
from casbackup.backends.memory import MemoryBackend
from casbackup.backends.retry import RetryingBackend
from casbackup.errors import AlreadyExists, NotFound, PermanentError, TransientError


def make(
    faults: list[Fault], attempts: int = 5, **kw: int
) -> tuple[RetryingBackend, FaultyBackend, list[float]]:
    faulty = FaultyBackend(MemoryBackend(), faults, **kw)
    sleeps: list[float] = []
    return RetryingBackend(faulty, attempts=attempts, sleep=sleeps.append), faulty, sleeps


def test_transient_retried_then_success() -> None:
    retrying, faulty, sleeps = make([Fault(ops=frozenset({"get"}), times=2)])
    faulty.inner.put("config", b"c")
    assert retrying.get("config") == b"c"
    assert faulty.calls.count(("get", "config")) == 3
    assert len(sleeps) == 2


def test_permanent_and_not_found_not_retried() -> None:
    retrying, faulty, sleeps = make([Fault(ops=frozenset({"stat"}), error=PermanentError)])
    faulty.inner.put("k", b"v")
    with pytest.raises(PermanentError):
        retrying.stat("k")
    with pytest.raises(NotFound):
        retrying.get("missing")
    with pytest.raises(AlreadyExists):
        retrying.put("k", b"other")
    assert faulty.calls == [("stat", "k"), ("get", "missing"), ("put", "k")]
    assert sleeps == []


def test_gives_up_after_attempts() -> None:
    retrying, faulty, sleeps = make([Fault(times=None)], attempts=3)
    with pytest.raises(TransientError, match="gave up after 3 attempts") as info:
        retrying.get("k")
    assert info.value.key == "k"
    assert len(faulty.calls) == 3
    assert len(sleeps) == 2


def test_backoff_is_capped_full_jitter() -> None:
    sleeps: list[float] = []
    faulty = FaultyBackend(MemoryBackend(), [Fault(times=None)])
    retrying = RetryingBackend(
        faulty,
        attempts=8,
        base_delay=0.5,
        max_delay=2.0,
        sleep=sleeps.append,
        rng=random.Random(1),
    )
    with pytest.raises(TransientError):
        retrying.stat("k")
    caps = [min(2.0, 0.5 * 2**n) for n in range(7)]
    assert len(sleeps) == 7
    assert all(0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))


def test_ambiguous_exclusive_put_with_same_bytes_succeeds() -> None:
    # The write lands, then its response is "lost": the retry sees AlreadyExists.
    retrying, faulty, _ = make([Fault(ops=frozenset({"put"}), when="after")])
    retrying.put("packs/ab/p", b"payload")
    assert faulty.inner.get("packs/ab/p") == b"payload"
    assert faulty.calls == [("put", "packs/ab/p"), ("put", "packs/ab/p"), ("get", "packs/ab/p")]


def test_ambiguous_exclusive_put_with_other_bytes_fails() -> None:
    retrying, faulty, _ = make([Fault(ops=frozenset({"put"}))])
    faulty.inner.put("config", b"someone else's")
    with pytest.raises(AlreadyExists):
        retrying.put("config", b"ours")
    assert faulty.inner.get("config") == b"someone else's"


def test_ambiguous_delete_succeeds() -> None:
    retrying, faulty, _ = make([Fault(ops=frozenset({"delete"}), when="after")])
    faulty.inner.put("locks/l", b"x")
    retrying.delete("locks/l")
    with pytest.raises(NotFound):
        faulty.inner.stat("locks/l")


def test_list_resumes_without_duplicates() -> None:
    retrying, faulty, sleeps = make([Fault(ops=frozenset({"list"}), when="after")])
    keys = [f"index/{i:02d}" for i in range(10)]
    for k in keys:
        faulty.inner.put(k, b"x")
    assert [i.key for i in retrying.list("index/")] == keys
    assert len(sleeps) == 1


def test_fault_selection_by_key_prefix_and_after() -> None:
    faulty = FaultyBackend(MemoryBackend(), [Fault(key_prefix="packs/", after=2, times=1)])
    for i in range(2):
        faulty.put(f"packs/{i}", b"x")
    faulty.put("index/0", b"x")  # other prefix: not counted, never fails
    with pytest.raises(TransientError, match="injected"):
        faulty.put("packs/2", b"x")
    faulty.put("packs/2", b"x")  # fired once only
    assert faulty.puts == ["packs/0", "packs/1", "index/0", "packs/2"]


def test_crash_after_puts() -> None:
    faulty = FaultyBackend(MemoryBackend(), crash_after_puts=2)
    faulty.put("packs/a", b"1")
    faulty.put("index/b", b"2")
    with pytest.raises(Crash):
        try:
            faulty.put("snapshots/c", b"3")
        except Exception:  # a crash must not be swallowed by ordinary handlers
            pytest.fail("Crash was caught by `except Exception`")
    with pytest.raises(Crash):
        faulty.get("packs/a")
    assert faulty.crashed
    assert faulty.puts == ["packs/a", "index/b"]
    assert [i.key for i in faulty.inner.list()] == ["index/b", "packs/a"]


def test_retrying_does_not_retry_crash() -> None:
    retrying, faulty, sleeps = make([], crash_after_puts=0)
    with pytest.raises(Crash):
        retrying.put("k", b"v")
    assert sleeps == []


def test_fault_rejects_unknown_ops() -> None:
    with pytest.raises(ValueError):
        Fault(ops=frozenset({"rename"}))


def test_get_into_passes_through_and_is_retried(tmp_path: Path) -> None:
    inner = LocalBackend(str(tmp_path))
    inner.put("packs/00/p", b"0123456789")
    calls = []
    real = inner.get_into

    def flaky(key: str, offset: int, buf: memoryview) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise TransientError("connection reset", key)
        real(key, offset, buf)

    inner.get_into = flaky  # type: ignore[method-assign]
    b = RetryingBackend(inner, attempts=3, sleep=lambda s: None)
    buf = bytearray(4)
    b.get_into("packs/00/p", 3, memoryview(buf))  # type: ignore[attr-defined]
    assert bytes(buf) == b"3456" and len(calls) == 2
    assert not hasattr(RetryingBackend(MemoryBackend()), "get_into")
