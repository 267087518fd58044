"""No interleaving of backups, syncs, forgets and gcs -- hosts sharing our hostname in
other machines or pid namespaces, clocks skewed by hours, actors paused past the lock's
stale age, kill -9 at any backend call -- commits a snapshot whose blobs the store no
longer holds (issue #10 points 1 and 4; the scheduler is ``interleave.py``, the protocol
DESIGN §8). The last two tests prove the checker can fail: it finds the loss that the
pre-wave-2 staleness rule allowed, and (CASBACKUP_DEEP=1 only: it is rare) the loss a
writer without its commit check allows."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from casbackup.store import commit, locks
from casbackup.store.identity import Identity
from casbackup.store.locks import LockInfo
from tests.integration.interleave import make_sources, schedule

# CASBACKUP_DEEP=1 explores (README "Testing"); the default is a sample that CI can afford.
# Schedules are seeded, but an actor's threads reach its gate in an order the machine
# decides, so a seed replays its schedule only mostly: FOUND (seeds whose schedule found
# a loss, here under the old staleness rule) run first every time, then the sample.
DEEP = bool(os.environ.get("CASBACKUP_DEEP"))
SCHEDULES = int(os.environ.get("CASBACKUP_INTERLEAVINGS") or (1500 if DEEP else 150))
FOUND = (16,)


def _seeds(n: int) -> list[int]:
    return [*FOUND, *(s for s in range(n) if s not in FOUND)]


def test_no_schedule_loses_a_committed_snapshots_blobs(tmp_path: Path) -> None:
    sources = make_sources(tmp_path)
    committed = pauses = crashes = 0
    for seed in _seeds(SCHEDULES):
        out = schedule(seed, sources, pause_p=(0.02, 0.05, 0.08)[seed % 3],
                       crash_p=(0.01, 0.03)[seed % 2])
        committed += len(out.committed)
        pauses += out.pauses
        crashes += out.crashes
    # the schedules paused and killed actors, and backups still committed
    assert committed > SCHEDULES and pauses > SCHEDULES / 10 and crashes > SCHEDULES / 10


def test_no_schedule_loses_data_on_the_local_backend(tmp_path: Path) -> None:
    """The same on real files (mtimes follow the scheduler's clock): a few hundred."""
    sources = make_sources(tmp_path)
    for seed in _seeds(max(20, SCHEDULES // 15)):
        schedule(seed, sources, pause_p=0.05, crash_p=0.02, local=tmp_path / f"s{seed}")


def _first_loss(sources: list[Path], seeds: list[int], **kw: object) -> str | None:
    for seed in seeds:
        try:
            schedule(seed, sources, **kw)  # type: ignore[arg-type]
        except AssertionError as e:
            return str(e)
    return None


def _old_stale(self: LockInfo, now: float, ref_mtime: float = 0.0,
               me: Identity | None = None) -> bool:
    """The rule before issue #10: the writer's clock, and 'same hostname, pid gone'."""
    if now - self.time > locks.STALE:
        return True
    if self.hostname == socket.gethostname():
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def test_the_checker_finds_the_loss_the_old_staleness_rule_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LockInfo, "stale", _old_stale)
    # hosts that share our hostname, and no pauses: the old rule alone loses data
    # (seed 16 finds it; DEEP searches from seed 0 without that hint)
    seeds = list(range(600)) if DEEP else _seeds(600)
    loss = _first_loss(make_sources(tmp_path), seeds, pause_p=0.0, crash_p=0.0, who="clone")
    # the loss shows as a blob in no pack, a snapshot that does not restore, or the final
    # gc refusing to run over packs that blobs in use need (whichever check sees it first)
    assert loss is not None and any(w in loss for w in (
        "no pack", "does not restore", "the final gc finds damage"))


@pytest.mark.skipif(not DEEP, reason="about one schedule in 500 shows this loss (measured: "
                    "none in 3 x 300, one at seed 533), so 600 miss it one run in five; "
                    "CASBACKUP_DEEP=1 runs it, and test_gc_beside's live-backup test pins "
                    "the commit check's copy in every run")
def test_the_checker_finds_the_loss_without_the_writers_commit_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit.WriteSession, "_check", lambda self, snap: None)
    loss = _first_loss(make_sources(tmp_path), list(range(3000)), pause_p=0.05, crash_p=0.01)
    assert loss is not None and ("no pack" in loss or "does not restore" in loss)
