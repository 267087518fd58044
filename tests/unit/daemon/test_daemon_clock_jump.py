"""The daemon's schedule when the wall clock jumps an hour (an NTP step, a laptop whose
clock was an hour off, faketime): a loop polling ``due()`` every few seconds and calling
``mark_run`` as the runner does runs no job twice in one minute, and after a jump forward
the hour it skipped is run once, for the slot that was pending, never once per missed
slot, and with ``catch_up`` that run is reported as a catch-up (it ran for a missed slot;
runs on time never are); after a jump back no slot it already ran is run again before the
clock passes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from casbackup.clock import FakeClock
from casbackup.daemon.schedule import Schedule

START = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Job:
    name: str
    cron: str
    catch_up: bool


def _drive(jump_at: float, jump: float, catch_up: bool, seconds: float = 3 * 3600,
           step: float = 5.0) -> list[tuple[float, datetime, bool]]:
    clock = FakeClock(START)
    sched = Schedule([Job("j", "*/5 * * * *", catch_up)], clock, tz=UTC)
    runs: list[tuple[float, datetime, bool]] = []
    jumped = False
    while clock.m < seconds:
        if not jumped and clock.m >= jump_at:
            clock.t += jump
            jumped = True
        for d in sched.due():
            runs.append((clock.t, d.scheduled, d.catch_up))
            sched.mark_run(d.job.name, clock.now(), clock.now())
        clock.advance(step)
    return runs


@pytest.mark.parametrize("catch_up", [True, False])
@pytest.mark.parametrize("jump", [3600.0, -3600.0])
def test_no_job_runs_twice_in_a_minute_across_an_hour_jump(jump: float,
                                                          catch_up: bool) -> None:
    runs = _drive(jump_at=1800, jump=jump, catch_up=catch_up)
    minutes = [int(t // 60) for t, _, _ in runs]
    assert len(minutes) == len(set(minutes)), minutes
    slots = [s for _, s, _ in runs]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    wall = [t for t, _, _ in runs]
    gaps = [b - a for a, b in zip(wall, wall[1:], strict=False)]
    if jump > 0:
        # the skipped hour: one run at the jump, for the slot that was pending; flagged a
        # catch-up exactly when the job has catch_up, and no on-time run is flagged
        (late,) = [(t, s, c) for t, s, c in runs if t - s.timestamp() > 60]
        assert 3600 - 300 <= late[0] - late[1].timestamp() <= 3600 + 10, late
        assert late[2] is catch_up, late
        assert not any(c for t, s, c in runs if t - s.timestamp() <= 60), runs
    else:
        # the repeated hour: nothing reruns a slot already run; the wait is the jump back
        assert max(gaps) <= 3600 + 300 + 10, gaps
    assert all(g >= 60 for g in gaps)


def test_a_late_slot_is_a_catch_up_until_marked_even_if_the_clock_steps_back() -> None:
    clock = FakeClock(START)  # 10:00:30; the */5 job is pending for 10:05
    sched = Schedule([Job("c", "*/5 * * * *", True), Job("n", "*/5 * * * *", False)],
                     clock, tz=UTC)
    clock.t += 4 * 60 + 30 + 61  # 61 s after the slot: missed
    assert [(d.job.name, d.catch_up) for d in sched.due()] == [("c", True), ("n", False)]
    clock.t -= 30  # an NTP step back: still the same missed slot
    assert [(d.job.name, d.catch_up) for d in sched.due()] == [("c", True), ("n", False)]
    sched.mark_run("c", clock.now())
    sched.mark_run("n", clock.now())
    clock.t = datetime(2026, 3, 2, 10, 10, 5, tzinfo=UTC).timestamp()  # on time
    assert [(d.job.name, d.catch_up) for d in sched.due()] == [("c", False), ("n", False)]
