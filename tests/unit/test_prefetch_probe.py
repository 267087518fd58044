"""The prefetch probe (source/prefetch.py): without a use for the totals, the prefetch
child is started only if the start of the walk *blocked* (waited for the disk) longer than
PROBE_BLOCKED_NS. Blocked time is wall time minus the thread's CPU time minus its
run-queue wait, so CPU work and a busy machine do not make a warm tree look cold.

Blocking is made real, not simulated: a listing that sleeps (the thread is off-CPU and
not runnable, as when it waits for an inode read); run-queue wait is made real by pinning
the probe to one CPU beside busy processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.cli.progress import CliObserver
from casbackup.ops.observer import Observer
from casbackup.source import prefetch
from casbackup.source.exclude import Excluder
from casbackup.source.prefetch import (
    PROBE_BLOCKED_NS,
    PROBE_DIRS,
    Prefetcher,
    tree_is_cold,
)


@pytest.fixture
def tree(tmp_path: Path) -> bytes:
    """40 directories of 5 files, just written (so in the inode cache)."""
    for d in range(40):
        (tmp_path / f"d{d:02}").mkdir()
        for f in range(5):
            (tmp_path / f"d{d:02}" / f"f{f}").write_bytes(b"x" * f)
    root = os.fsencode(tmp_path)
    prefetch._walk([root], Excluder())  # and read once
    return root


def _slow_listings(monkeypatch: pytest.MonkeyPatch, before: Callable[[], None]) -> list[int]:
    """Make every os.scandir call BEFORE() first; returns the list its calls are counted in."""
    real = os.scandir
    calls: list[int] = []

    def scandir(path: bytes) -> os._ScandirIterator[bytes]:  # type: ignore[name-defined]
        calls.append(1)
        before()
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return calls


# a tree: each directory is (number of files, subdirectories)
Trees = st.recursive(st.tuples(st.integers(0, 3), st.just([])),
                     lambda sub: st.tuples(st.integers(0, 3), st.lists(sub, max_size=6)),
                     max_leaves=60)


def _make(path: Path, spec: tuple[int, list[Any]]) -> int:
    """Make the tree SPEC at PATH; how many directories it has."""
    path.mkdir()
    for f in range(spec[0]):
        (path / f"f{f}").write_bytes(b"")
    return 1 + sum(_make(path / f"d{i}", sub) for i, sub in enumerate(spec[1]))


@settings(max_examples=60, deadline=None)
@given(spec=Trees)
def test_the_probe_reads_the_start_of_the_walkers_walk(
        spec: tuple[int, list[Any]], tmp_path_factory: pytest.TempPathFactory) -> None:
    """What the probe warms is what the walker reads first: its listings are a prefix of
    the full walk's, PROBE_DIRS of them (or all, for a smaller tree) unless it found the
    tree cold."""
    root = tmp_path_factory.mktemp("t") / "root"
    dirs = _make(root, spec)
    listed: list[bytes] = []
    real = os.scandir

    def scandir(path: bytes) -> Any:
        listed.append(path)
        return real(path)

    probe = prefetch._Probe()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "scandir", scandir)
        prefetch._walk([os.fsencode(root)], Excluder())
        full, listed[:] = listed[:], []
        prefetch._walk([os.fsencode(root)], Excluder(), stop=probe)
    probe.close()
    assert len(full) == dirs
    assert listed == full[:len(listed)]
    if not probe.cold:  # the entries bound (4096) is not reached by these trees
        assert len(listed) == min(dirs, PROBE_DIRS)


def _burn(ns: int) -> None:
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


def test_a_warm_tree_starts_a_child_only_for_the_totals(tree: bytes) -> None:
    assert not tree_is_cold([tree], Excluder())
    p = Prefetcher([tree], Excluder()).start()  # nobody wants totals: no child
    try:
        assert p.pid is None
    finally:
        p.stop()
    got: list[tuple[int, int]] = []
    with Prefetcher([tree], Excluder(), lambda b, f: got.append((b, f))) as p:
        assert p.pid is not None  # the totals are wanted: the child runs, warm or not


def test_a_tree_whose_listings_block_starts_the_child_and_the_probe_stops_early(
        tree: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _slow_listings(monkeypatch, lambda: time.sleep(0.001))
    p = Prefetcher([tree], Excluder()).start()
    try:
        assert p.pid is not None
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            assert b"casbackup.source.prefetch" in f.read().split(b"\0")
    finally:
        p.stop()
    # it stopped once blocked 2 ms (at most 3 listings of >= 1 ms), not after all 41
    assert len(calls) <= 4


def test_without_a_count_of_sleeps_a_blocking_tree_is_still_cold(
        tree: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefetch, "_voluntary_switches", lambda: -1)  # no RUSAGE_THREAD
    _slow_listings(monkeypatch, lambda: time.sleep(0.001))
    assert tree_is_cold([tree], Excluder())


def test_cpu_time_is_not_blocked_time(tree: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_listings(monkeypatch, lambda: _burn(200_000))  # 41 listings: ~8 ms of CPU
    assert not tree_is_cold([tree], Excluder())


def test_time_lost_without_sleeping_is_not_blocked_time(
        tree: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steal time (a VM's vCPU taken away) moves the wall clock while the thread neither
    runs nor sleeps; here each listing moves it 3 ms."""
    lost = [0]
    real = time.perf_counter_ns
    monkeypatch.setattr(time, "perf_counter_ns", lambda: real() + lost[0])
    _slow_listings(monkeypatch, lambda: lost.__setitem__(0, lost[0] + 3_000_000))
    assert not tree_is_cold([tree], Excluder())


def test_a_preemption_between_the_clock_reads_is_not_blocked_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated clocks: the thread sleeps 3 ms, then is preempted for 10 ms just as it
    reads them, after the wall clock and before the run-queue wait. Blocked is 3 ms, not
    3 - 10 (a cold tree called warm) nor 13 (the other order: a warm tree called cold)."""
    now, wait, sleeps, armed = [0], [0], [0], [False]

    def run_queue(self: prefetch._Probe) -> int:
        if armed[0]:
            armed[0] = False
            now[0] += 10_000_000
            wait[0] += 10_000_000
        return wait[0]

    monkeypatch.setattr(time, "perf_counter_ns", lambda: now[0])
    monkeypatch.setattr(time, "thread_time_ns", lambda: 0)
    monkeypatch.setattr(prefetch._Probe, "_run_queue_ns", run_queue)
    monkeypatch.setattr(prefetch, "_voluntary_switches", lambda: sleeps[0])
    probe = prefetch._Probe()
    now[0] += 3_000_000
    sleeps[0] += 1
    armed[0] = True
    assert probe.blocked_ns() == 3_000_000
    probe.close()


@pytest.fixture
def crowded_cpu() -> Iterator[None]:
    """This thread pinned to one CPU, which three busy processes share with it."""
    if not os.path.exists("/proc/thread-self/schedstat"):
        pytest.skip("no /proc/thread-self/schedstat: run-queue wait is not measured")
    before = os.sched_getaffinity(0)
    cpu = min(before)
    busy = [subprocess.Popen([sys.executable, "-c",
                              f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile 1: pass"])
            for _ in range(3)]
    os.sched_setaffinity(0, {cpu})
    try:
        time.sleep(0.3)  # they are running
        yield
    finally:
        os.sched_setaffinity(0, before)
        for b in busy:
            b.kill()
            b.wait()


def test_waiting_for_a_cpu_is_not_blocked_time(tree: bytes, monkeypatch: pytest.MonkeyPatch,
                                               crowded_cpu: None) -> None:
    _slow_listings(monkeypatch, lambda: _burn(200_000))
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    cold = tree_is_cold([tree], Excluder())
    idle = (time.perf_counter_ns() - wall) - (time.thread_time_ns() - cpu)
    assert idle > 2 * PROBE_BLOCKED_NS  # wall time alone would have called it cold
    assert not cold


def test_only_a_bar_or_json_status_lines_want_totals() -> None:
    assert CliObserver(tty=True, quiet=False).wants_totals()
    assert CliObserver(json_lines=True, tty=False, quiet=False).wants_totals()
    assert not CliObserver(tty=False, quiet=False).wants_totals()
    assert not CliObserver(json_lines=True, tty=False, quiet=True).wants_totals()
    assert not CliObserver(tty=True, quiet=True).wants_totals()
    assert not Observer().wants_totals()
