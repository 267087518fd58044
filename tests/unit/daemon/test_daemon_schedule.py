"""Cron timing (casbackup.daemon.schedule): next_run, missed_runs and Schedule, fake time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from casbackup.clock import FakeClock
from casbackup.daemon.schedule import Schedule, missed_runs, next_run, validate_cron
from casbackup.errors import UsageError

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str, tz: ZoneInfo = BERLIN, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def runs(cron: str, after: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        after = next_run(cron, after)
        out.append(after)
    return out


@dataclass(frozen=True)
class Job:
    name: str
    cron: str
    catch_up: bool = False


# --- next_run --------------------------------------------------------------------------


def test_next_run_is_strictly_after() -> None:
    assert next_run("0 3 * * *", at("2026-11-18T12:00")) == at("2026-11-19T03:00")
    assert next_run("0 3 * * *", at("2026-11-19T03:00")) == at("2026-11-20T03:00")
    assert next_run("0 3 * * *", at("2026-11-19T02:59:59.999999")) == at("2026-11-19T03:00")
    assert next_run("0 3 * * 0", at("2026-11-18T12:00")) == at("2026-11-22T03:00")  # Sunday


def test_next_run_reads_the_wall_clock_of_after_zone() -> None:
    after = at("2026-11-18T12:00")
    assert next_run("0 3 * * *", after.astimezone(UTC)) == utc("2026-11-19T03:00")
    assert next_run("0 3 * * *", after).astimezone(UTC) == utc("2026-11-19T02:00")
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run("0 3 * * *", datetime(2026, 1, 1))


def test_six_fields_put_seconds_last() -> None:
    assert runs("*/10 * * * * 30", at("2026-11-18T12:00"), 3) == [
        at("2026-11-18T12:00:30"),
        at("2026-11-18T12:10:30"),
        at("2026-11-18T12:20:30"),
    ]
    assert runs("* * * * * */15", at("2026-11-18T12:00"), 2) == [
        at("2026-11-18T12:00:15"),
        at("2026-11-18T12:00:30"),
    ]


def test_berlin_spring_forward_runs_a_skipped_time_after_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    assert runs("30 2 * * *", at("2026-03-28T12:00"), 2) == [
        at("2026-03-29T03:00"),
        at("2026-03-30T02:30"),
    ]
    hourly = runs("0 * * * *", at("2026-03-29T00:30"), 3)
    assert [t.astimezone(UTC) for t in hourly] == [
        utc("2026-03-29T00:00"),
        utc("2026-03-29T01:00"),  # 03:00 CEST: the hour 02 is skipped, not run twice
        utc("2026-03-29T02:00"),
    ]


def test_berlin_fall_back_runs_fixed_time_jobs_once() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    assert runs("30 2 * * *", at("2026-10-24T12:00"), 2) == [
        at("2026-10-25T02:30", fold=0),  # 00:30Z, the first 02:30
        at("2026-10-26T02:30"),
    ]
    assert runs("30 2 * * *", at("2026-10-24T12:00"), 1)[0].astimezone(UTC) == utc(
        "2026-10-25T00:30"
    )
    # Started between the two 02:30s, the second one is not a new run either.
    assert next_run("30 2 * * *", at("2026-10-25T02:45", fold=0)) == at("2026-10-26T02:30")


def test_berlin_fall_back_runs_wildcard_jobs_every_real_hour() -> None:
    hourly = [t.astimezone(UTC) for t in runs("0 * * * *", at("2026-10-25T01:30"), 4)]
    assert hourly == [
        utc("2026-10-25T00:00"),  # 02:00 CEST
        utc("2026-10-25T01:00"),  # 02:00 CET
        utc("2026-10-25T02:00"),  # 03:00 CET
        utc("2026-10-25T03:00"),
    ]
    half_hours = runs("*/30 * * * *", at("2026-10-25T01:45"), 5)
    assert [t.astimezone(UTC) - half_hours[0].astimezone(UTC) for t in half_hours] == [
        timedelta(minutes=30 * i) for i in range(5)
    ]


def test_new_york_transitions() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT; 2026-11-01: 02:00 EDT -> 01:00 EST.
    assert next_run("30 2 * * *", at("2026-03-07T12:00", NEW_YORK)) == at(
        "2026-03-08T03:00", NEW_YORK
    )
    daily = runs("30 1 * * *", at("2026-10-31T12:00", NEW_YORK), 2)
    assert [t.astimezone(UTC) for t in daily] == [
        utc("2026-11-01T05:30"),  # 01:30 EDT, once
        utc("2026-11-02T06:30"),  # 01:30 EST the next day
    ]


# --- validate_cron and missed_runs -------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 3 * *", "expected 5 fields"),
        ("0 3 * * * * *", "expected 5 fields"),
        ("@reboot", "known aliases are @yearly"),
        ("0 24 * * *", "out of range"),
        ("0 0 30 2 *", "never fires"),
        ("*/0 * * * *", "step"),
    ],
)
def test_validate_cron_rejects(cron: str, reason: str) -> None:
    with pytest.raises(UsageError) as info:
        validate_cron(cron)
    assert str(info.value).startswith(f"invalid cron expression {cron!r}: ")
    assert reason in str(info.value)


@pytest.mark.parametrize("cron", ["0 3 * * *", "0 0 29 2 *", "*/5 * * * * 30", "0 3 * * mon-fri"])
def test_validate_cron_accepts(cron: str) -> None:
    validate_cron(cron)


@pytest.mark.parametrize(
    ("alias", "expansion"),
    [("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
     ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
     ("@hourly", "0 * * * *"), ("@DAILY", "0 0 * * *")],
)
def test_cron_aliases_fire_as_their_expansion(alias: str, expansion: str) -> None:
    validate_cron(alias)
    t = utc("2026-03-07T13:45")
    for _ in range(30):  # 30 consecutive slots agree, not just the first
        t_alias, t_exp = next_run(alias, t), next_run(expansion, t)
        assert t_alias == t_exp
        t = t_alias


def test_missed_runs_lists_slots_in_the_interval() -> None:
    last, now = at("2026-11-18T10:00"), at("2026-11-18T13:30")
    assert missed_runs("0 * * * *", last, now) == [
        at("2026-11-18T11:00"),
        at("2026-11-18T12:00"),
        at("2026-11-18T13:00"),
    ]
    assert missed_runs("0 * * * *", last, at("2026-11-18T13:00")) == missed_runs(
        "0 * * * *", last, now
    )  # the interval is closed at now
    assert missed_runs("0 * * * *", last, now, limit=1) == [at("2026-11-18T11:00")]
    assert missed_runs("0 3 * * *", last, now) == []


# --- Schedule ----------------------------------------------------------------------------


def clock_at(when: datetime) -> FakeClock:
    return FakeClock(when.timestamp())


def test_schedule_job_becomes_due_and_stays_due_until_marked() -> None:
    clock = clock_at(at("2026-11-18T12:10"))
    schedule = Schedule([Job("hourly", "0 * * * *"), Job("daily", "0 3 * * *")], clock, BERLIN)
    assert schedule.due() == []
    assert schedule.next_wakeup() == at("2026-11-18T13:00")
    clock.advance(50 * 60)
    (due,) = schedule.due()
    assert (due.job.name, due.scheduled, due.catch_up) == ("hourly", at("2026-11-18T13:00"), False)
    clock.advance(5)
    assert [d.job.name for d in schedule.due()] == ["hourly"]  # the runner has not run it
    schedule.mark_run("hourly", schedule.now())
    assert schedule.due() == []
    assert schedule.pending("hourly") == at("2026-11-18T14:00")


def test_schedule_late_wakeup_runs_once_not_per_slot() -> None:
    clock = clock_at(at("2026-11-18T12:10"))
    schedule = Schedule([Job("hourly", "0 * * * *")], clock, BERLIN)
    clock.advance(5 * 3600)  # e.g. the machine slept
    (due,) = schedule.due()
    assert due.scheduled == at("2026-11-18T13:00")
    schedule.mark_run("hourly", schedule.now())
    assert schedule.due() == []
    assert schedule.pending("hourly") == at("2026-11-18T18:00")


def test_schedule_due_is_ordered_by_time_then_name() -> None:
    clock = clock_at(at("2026-11-18T02:00"))
    jobs = [Job("b", "0 3 * * *"), Job("c", "30 2 * * *"), Job("a", "0 3 * * *")]
    schedule = Schedule(jobs, clock, BERLIN)
    clock.advance(3600)
    assert [d.job.name for d in schedule.due()] == ["c", "a", "b"]


def test_schedule_catch_up_after_daemon_downtime() -> None:
    clock = clock_at(at("2026-11-18T09:00"))
    last = {"catch": at("2026-11-17T03:00"), "skip": at("2026-11-17T03:00")}
    jobs = [Job("catch", "0 3 * * *", catch_up=True), Job("skip", "0 3 * * *")]
    schedule = Schedule(jobs, clock, BERLIN, last_runs=last)
    (due,) = schedule.due()  # one run for the missed 03:00, right away
    assert (due.job.name, due.scheduled, due.catch_up) == ("catch", at("2026-11-18T03:00"), True)
    assert schedule.pending("skip") == at("2026-11-19T03:00")
    schedule.mark_run("catch", schedule.now())
    assert schedule.pending("catch") == at("2026-11-19T03:00")


def test_schedule_catch_up_needs_a_missed_slot() -> None:
    clock = clock_at(at("2026-11-18T09:00"))
    last = {"catch": at("2026-11-18T03:00").astimezone(UTC)}  # ran at today's slot
    schedule = Schedule([Job("catch", "0 3 * * *", catch_up=True)], clock, BERLIN, last)
    assert schedule.due() == []
    assert schedule.pending("catch") == at("2026-11-19T03:00")
    never_ran = Schedule([Job("catch", "0 3 * * *", catch_up=True)], clock, BERLIN)
    assert never_ran.due() == []


def test_schedule_overrun_is_caught_up_once_or_skipped() -> None:
    clock = clock_at(at("2026-11-18T02:59"))
    jobs = [Job("catch", "0 * * * *", catch_up=True), Job("skip", "0 * * * *")]
    schedule = Schedule(jobs, clock, BERLIN)
    clock.advance(60)
    assert [d.job.name for d in schedule.due()] == ["catch", "skip"]
    started = schedule.now()
    clock.advance(2.5 * 3600)  # both ran 03:00-05:30, over the 04:00 and 05:00 slots
    schedule.mark_run("catch", started, schedule.now())
    schedule.mark_run("skip", started, schedule.now())
    (due,) = schedule.due()
    assert (due.job.name, due.scheduled, due.catch_up) == ("catch", at("2026-11-18T04:00"), True)
    assert schedule.pending("skip") == at("2026-11-18T06:00")
    schedule.mark_run("catch", schedule.now(), schedule.now() + timedelta(minutes=10))
    assert schedule.pending("catch") == at("2026-11-18T06:00")
    assert schedule.due() == []


def test_schedule_rejects_duplicate_job_names() -> None:
    with pytest.raises(ValueError, match="duplicate job name 'a'"):
        Schedule([Job("a", "0 * * * *"), Job("a", "0 3 * * *")], FakeClock(), UTC)


def test_schedule_without_jobs_never_wakes() -> None:
    assert Schedule([], FakeClock(), UTC).next_wakeup() is None


def test_schedule_compares_instants_not_wall_times_in_the_repeated_hour() -> None:
    # 02:40 CEST comes an hour before 02:30 CET: the 02:30 CET slot is not yet due.
    clock = clock_at(at("2026-10-25T02:40", fold=0))
    schedule = Schedule([Job("half-past", "30 * * * *")], clock, BERLIN)
    assert schedule.pending("half-past").astimezone(UTC) == utc("2026-10-25T01:30")
    assert schedule.due() == []
    clock.advance(49 * 60)
    assert schedule.due() == []
    clock.advance(60)
    assert [d.job.name for d in schedule.due()] == ["half-past"]
    missed = missed_runs("30 * * * *", at("2026-10-25T02:35", fold=0), schedule.now())
    assert [t.astimezone(UTC) for t in missed] == [utc("2026-10-25T01:30")]
    # 02:30 CET is after 02:40 CEST, though its wall clock reads earlier.
    assert missed_runs("30 * * * *", at("2026-10-25T02:35"), at("2026-10-25T02:40")) == []
