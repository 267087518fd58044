"""The run queue (casbackup.daemon.queue): one run per job, one job per store, retries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from casbackup.daemon.queue import Run, RunQueue

T = datetime(2024, 5, 1, tzinfo=UTC)
STORES = {"a1": ("a",), "a2": ("a",), "b1": ("b",), "ab": ("b", "a")}


def names(runs: list[Run]) -> list[str]:
    return [r.name for r in runs]


def test_queue_one_job_per_store_in_order() -> None:
    q = RunQueue()
    for n in ("a1", "ab", "a2", "b1"):
        q.add(Run(n, T, False))
    with pytest.raises(ValueError):
        q.add(Run("a1", T, False))
    assert names(q.ready(0.0, STORES.get)) == ["a1", "b1"]  # ab and a2 wait for a
    assert q.busy == {"a": "a1", "b": "b1"}
    assert names(q.ready(0.0, STORES.get)) == []
    q.release("a1")
    q.drop("a1")
    assert names(q.ready(0.0, STORES.get)) == ["a2"]  # ab still needs b
    q.release("b1")
    q.drop("b1")
    q.release("a2")
    q.drop("a2")
    assert names(q.ready(0.0, STORES.get)) == ["ab"]
    assert names(q.running()) == ["ab"]


def test_queue_retry_waits_and_frees_the_store() -> None:
    q = RunQueue()
    q.add(Run("a1", T, False))
    q.add(Run("a2", T, False))
    assert names(q.ready(0.0, STORES.get)) == ["a1"]
    q.release("a1")
    q.retry("a1", not_before=30.0)
    assert q["a1"].attempt == 1 and q.next_retry() == 0.0  # a2 may start now
    assert names(q.ready(1.0, STORES.get)) == ["a2"]
    q.release("a2")
    q.drop("a2")
    assert names(q.ready(29.0, STORES.get)) == [] and q.next_retry() == 30.0
    assert names(q.ready(30.0, STORES.get)) == ["a1"]


def test_queue_drops_runs_of_removed_jobs_and_waiting_runs() -> None:
    q = RunQueue()
    q.add(Run("gone", T, False))
    q.add(Run("a1", T, False))
    q.add(Run("a2", T, False))
    assert names(q.ready(0.0, STORES.get)) == ["a1"]
    assert "gone" not in q
    q.drop_waiting()
    assert names(q.running()) == ["a1"] and q.waiting == []
