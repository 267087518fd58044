"""Index consolidation (store/consolidate.py) beside backups, syncs, forgets and gcs, paused
and killed at any backend call, never loses a committed snapshot's blobs: the seeded
scheduler of ``interleave.py`` (the gc protocol, DESIGN §8) with every backup
consolidating as soon as two small index objects exist. The second test proves the checker
sees a consolidation that is not exact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casbackup.store import consolidate
from tests.integration.interleave import make_sources, schedule

# CASBACKUP_DEEP=1 explores (README "Testing"); the default is a sample CI can afford,
# FOUND first: the seeds whose schedules found the lossy consolidation below.
SCHEDULES = int(os.environ.get("CASBACKUP_INTERLEAVINGS") or (
    600 if os.environ.get("CASBACKUP_DEEP") else 120))
FOUND = (0, 14, 15, 16, 19)


def test_consolidating_backups_lose_no_committed_blobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consolidate, "MIN_OBJECTS", 1)
    ran: list[str] = []
    real = consolidate.consolidate

    def counted(store: object, names: list[str]) -> str | None:
        new = real(store, names)  # type: ignore[arg-type]
        if new is not None:
            ran.append(new)
        return new

    monkeypatch.setattr(consolidate, "consolidate", counted)
    sources = make_sources(tmp_path)
    committed = 0
    for seed in [*FOUND, *(s for s in range(SCHEDULES) if s not in FOUND)]:
        out = schedule(seed, sources, pause_p=(0.02, 0.05, 0.08)[seed % 3],
                       crash_p=(0.01, 0.03)[seed % 2])
        committed += len(out.committed)
    # the schedules exercised it: backups committed, and consolidation ran many times
    # (7-8 of the default 120 schedules complete a consolidation since a lock listing that
    # lost an object is taken again: more scheduled calls per listing, so the schedules'
    # pauses and crashes interrupt more of them; 13 before)
    assert committed > SCHEDULES and len(ran) >= 5


def test_the_checker_finds_a_consolidation_that_drops_packs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker can fail: a consolidation that is not exact (it leaves the last pack
    of the objects it supersedes out) loses committed data."""
    monkeypatch.setattr(consolidate, "MIN_OBJECTS", 1)
    real = consolidate.encode_index

    def lossy(packs: list, supersedes: list, exact: bool = False) -> bytes:  # type: ignore[type-arg]
        return real(packs[:-1], supersedes, exact)

    monkeypatch.setattr(consolidate, "encode_index", lossy)
    sources = make_sources(tmp_path)
    loss = None
    for seed in range(200):
        try:
            schedule(seed, sources, pause_p=0.0, crash_p=0.0)
        except AssertionError as e:
            loss = str(e)
            break
    assert loss is not None
