"""Retention policy (casbackup.ops.retention): restic's forget rules, calendar edge cases."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.errors import UsageError
from casbackup.ops.groupkey import GroupKey
from casbackup.ops.retention import (
    Decision,
    Duration,
    Policy,
    SnapshotEntry,
    apply_policy,
    kept,
    parse_duration,
    removed,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def snap(
    id: str,
    when: str,
    tz: tzinfo | None = None,
    *,
    fold: int = 0,
    host: str = "h",
    paths: tuple[str, ...] = ("/data",),
    tags: tuple[str, ...] = (),
) -> SnapshotEntry:
    """A snapshot at wall time ``when`` in ``tz`` (UTC when None), stored as UTC."""
    local = datetime.fromisoformat(when).replace(tzinfo=tz or UTC, fold=fold)
    return SnapshotEntry(id, local.astimezone(UTC), host, paths, tags)


def only_group(result: dict[GroupKey, list[Decision]]) -> list[Decision]:
    assert len(result) == 1
    return next(iter(result.values()))


def kept_ids(snaps: list[SnapshotEntry], policy: Policy, tz: tzinfo = BERLIN) -> list[str]:
    return [s.id for s in kept(only_group(apply_policy(snaps, policy, tz)))]


def reasons(
    snaps: list[SnapshotEntry], policy: Policy, tz: tzinfo = BERLIN
) -> dict[str, tuple[str, ...]]:
    return {d.snapshot.id: d.reasons for d in only_group(apply_policy(snaps, policy, tz))}


# --- basic rules -------------------------------------------------------------------------


def test_policy_empty_is_refused() -> None:
    snaps = [snap("a", "2026-01-01T00:00")]
    for policy in (Policy(), Policy(keep_last=0), Policy(keep_within=timedelta(0))):
        with pytest.raises(UsageError, match="no policy given"):
            apply_policy(snaps, policy, UTC)


def test_policy_rejects_bad_counts_and_group_by() -> None:
    with pytest.raises(UsageError, match="keep_daily"):
        Policy(keep_daily=-2)
    with pytest.raises(UsageError, match="group_by"):
        Policy(keep_last=1, group_by=("user",))
    with pytest.raises(UsageError, match="keep_tags"):
        Policy(keep_tags=("a,,b",))


def test_keep_last_keeps_newest_n_newest_first() -> None:
    snaps = [snap(f"s{i}", f"2026-01-0{i}T12:00") for i in range(1, 6)]
    decisions = only_group(apply_policy(snaps, Policy(keep_last=3), UTC))
    assert [d.snapshot.id for d in decisions] == ["s5", "s4", "s3", "s2", "s1"]
    assert [d.keep for d in decisions] == [True, True, True, False, False]
    assert [d.reasons for d in decisions] == [("last",)] * 3 + [()] * 2
    assert [s.id for s in removed(decisions)] == ["s2", "s1"]


def test_keep_daily_keeps_newest_of_each_day() -> None:
    snaps = [
        snap("d1-early", "2026-05-01T08:00"),
        snap("d1-late", "2026-05-01T20:00"),
        snap("d2", "2026-05-02T09:00"),
        snap("d3-a", "2026-05-03T01:00"),
        snap("d3-b", "2026-05-03T02:00"),
    ]
    assert reasons(snaps, Policy(keep_daily=2), UTC) == {
        "d3-b": ("daily 2026-05-03",),
        "d3-a": (),
        "d2": ("daily 2026-05-02",),
        "d1-late": (),
        "d1-early": (),
    }


def test_bucket_with_counts_left_keeps_oldest_too() -> None:
    # restic >= 0.17: an unused count keeps the oldest snapshot, even in a used bucket.
    snaps = [snap(c, f"2026-05-01T0{i}:00") for i, c in enumerate("abc", start=1)]
    assert reasons(snaps, Policy(keep_daily=7), UTC) == {
        "c": ("daily 2026-05-01",),
        "b": (),
        "a": ("oldest daily 2026-05-01",),
    }
    # With the count used up, the oldest is not kept.
    assert kept_ids(snaps, Policy(keep_daily=1), UTC) == ["c"]


def test_unlimited_count_keeps_every_bucket() -> None:
    snaps = [snap(f"m{m}", f"2026-{m:02d}-15T12:00") for m in range(1, 13)]
    snaps.append(snap("m12-early", "2026-12-01T12:00"))
    ids = kept_ids(snaps, Policy(keep_monthly=-1), UTC)
    assert ids == [f"m{m}" for m in range(12, 0, -1)]


def test_reasons_list_every_rule_in_order() -> None:
    snaps = [snap("new", "2026-05-02T10:00", tags=("keep",)), snap("old", "2026-04-01T10:00")]
    policy = Policy(
        keep_last=1, keep_hourly=1, keep_daily=1, keep_weekly=1, keep_monthly=1,
        keep_yearly=1, keep_within=parse_duration("7d"), keep_tags=("keep",),
    )  # fmt: skip
    assert reasons(snaps, policy, UTC)["new"] == (
        "tag:keep",
        "within 7d",
        "last",
        "hourly 2026-05-02T10",
        "daily 2026-05-02",
        "weekly 2026-W18",
        "monthly 2026-05",
        "yearly 2026",
    )
    assert reasons(snaps, policy, UTC)["old"] == ()


# --- calendar edge cases -----------------------------------------------------------------


def test_daily_buckets_follow_berlin_wall_clock_across_spring_forward() -> None:
    # 2026-03-29 is a 23-hour day in Berlin (02:00 CET -> 03:00 CEST).
    snaps = [
        snap("28-late", "2026-03-28T23:30", BERLIN),
        snap("29-early", "2026-03-29T01:30", BERLIN),  # CET, 00:30Z
        snap("29-late", "2026-03-29T23:30", BERLIN),  # CEST, 21:30Z
        snap("30-early", "2026-03-30T00:30", BERLIN),  # CEST, 22:30Z on the 29th in UTC
    ]
    assert kept_ids(snaps, Policy(keep_daily=3), BERLIN) == ["30-early", "29-late", "28-late"]
    # Bucketed in UTC, three of them fall on 2026-03-29: the zone matters.
    assert kept_ids(snaps, Policy(keep_daily=3), UTC) == ["30-early", "28-late"]


def test_hourly_buckets_merge_the_repeated_hour_at_berlin_fall_back() -> None:
    # 2026-10-25: 03:00 CEST -> 02:00 CET, the wall-clock hour 02 happens twice.
    snaps = [
        snap("01:30", "2026-10-25T01:30", BERLIN),
        snap("02:30-cest", "2026-10-25T02:30", BERLIN, fold=0),  # 00:30Z
        snap("02:30-cet", "2026-10-25T02:30", BERLIN, fold=1),  # 01:30Z
        snap("03:30", "2026-10-25T03:30", BERLIN),
    ]
    assert snaps[2].time - snaps[1].time == timedelta(hours=1)
    assert reasons(snaps, Policy(keep_hourly=3), BERLIN) == {
        "03:30": ("hourly 2026-10-25T03",),
        "02:30-cet": ("hourly 2026-10-25T02",),
        "02:30-cest": (),
        "01:30": ("hourly 2026-10-25T01",),
    }
    # In UTC they are four distinct hours.
    assert len(kept_ids(snaps, Policy(keep_hourly=4), UTC)) == 4


def test_new_york_25_hour_day_is_one_daily_bucket() -> None:
    # 2026-11-01 lasts 25 hours in New York; 00:30 EDT and 23:30 EST are 24h apart.
    snaps = [
        snap("oct31", "2026-10-31T12:00", NEW_YORK),
        snap("nov1-early", "2026-11-01T00:30", NEW_YORK),
        snap("nov1-late", "2026-11-01T23:30", NEW_YORK),
    ]
    assert snaps[2].time - snaps[1].time == timedelta(hours=24)
    assert kept_ids(snaps, Policy(keep_daily=2), NEW_YORK) == ["nov1-late", "oct31"]
    # In UTC, 23:30 EST is already November 2nd: two different days.
    assert kept_ids(snaps, Policy(keep_daily=2), UTC) == ["nov1-late", "nov1-early"]


def test_new_york_skipped_hour_and_repeated_hour() -> None:
    spring = [
        snap("01:59", "2026-03-08T01:59", NEW_YORK),
        snap("03:00", "2026-03-08T03:00", NEW_YORK),  # one minute later in real time
    ]
    assert spring[1].time - spring[0].time == timedelta(minutes=1)
    assert reasons(spring, Policy(keep_hourly=5), NEW_YORK) == {
        "03:00": ("hourly 2026-03-08T03",),
        "01:59": ("hourly 2026-03-08T01",),
    }
    fall = [
        snap("01:10-edt", "2026-11-01T01:10", NEW_YORK, fold=0),
        snap("01:50-est", "2026-11-01T01:50", NEW_YORK, fold=1),
    ]
    assert kept_ids(fall, Policy(keep_hourly=1), NEW_YORK) == ["01:50-est"]


def test_year_end_in_local_time_not_utc() -> None:
    snaps = [
        snap("2026-last", "2026-12-31T23:59", BERLIN),
        snap("2027-first", "2027-01-01T00:01", BERLIN),  # still 2026 in UTC
    ]
    assert reasons(snaps, Policy(keep_yearly=2, keep_monthly=2), BERLIN) == {
        "2027-first": ("monthly 2027-01", "yearly 2027"),
        "2026-last": ("monthly 2026-12", "yearly 2026"),
    }
    assert kept_ids(snaps, Policy(keep_yearly=1), BERLIN) == ["2027-first"]
    assert kept_ids(snaps, Policy(keep_yearly=2), UTC) == ["2027-first", "2026-last"]
    assert reasons(snaps, Policy(keep_yearly=2), UTC)["2026-last"] == ("oldest yearly 2026",)


def test_iso_week_53_spans_the_new_year() -> None:
    # 2026 has 53 ISO weeks: 2026-W53 runs from Mon 2026-12-28 to Sun 2027-01-03.
    snaps = [
        snap("w52", "2026-12-27T12:00", BERLIN),  # Sunday of 2026-W52
        snap("w53-mon", "2026-12-28T12:00", BERLIN),
        snap("w53-sun", "2027-01-03T12:00", BERLIN),
        snap("w01", "2027-01-04T12:00", BERLIN),
    ]
    assert reasons(snaps, Policy(keep_weekly=3), BERLIN) == {
        "w01": ("weekly 2027-W01",),
        "w53-sun": ("weekly 2026-W53",),
        "w53-mon": (),
        "w52": ("weekly 2026-W52",),
    }


def test_iso_week_1_starts_in_the_previous_year() -> None:
    # Mon 2024-12-30 belongs to 2025-W01; Sun 2024-12-29 to 2024-W52.
    snaps = [
        snap("w52", "2024-12-29T23:00", BERLIN),
        snap("w01-dec", "2024-12-30T00:30", BERLIN),  # Sunday 23:30 in UTC
        snap("w01-jan", "2025-01-05T08:00", BERLIN),
    ]
    assert reasons(snaps, Policy(keep_weekly=2), BERLIN) == {
        "w01-jan": ("weekly 2025-W01",),
        "w01-dec": (),
        "w52": ("weekly 2024-W52",),
    }
    # In UTC the Monday-morning snapshot is still in 2024-W52, and is newest there.
    assert kept_ids(snaps, Policy(keep_weekly=2), UTC) == ["w01-jan", "w01-dec"]


def test_equal_timestamps_are_ordered_by_id_whatever_the_input_order() -> None:
    same = [snap(i, "2026-06-01T12:00") for i in ("c", "a", "b")]
    older = snap("z-older", "2026-05-31T12:00")
    for perm in itertools.permutations([*same, older]):
        decisions = only_group(apply_policy(perm, Policy(keep_last=2, keep_daily=1), UTC))
        assert [d.snapshot.id for d in decisions] == ["a", "b", "c", "z-older"]
        assert [s.id for s in kept(decisions)] == ["a", "b"]
        assert decisions[0].reasons == ("last", "daily 2026-06-01")


# --- keep_within -------------------------------------------------------------------------


def test_keep_within_is_relative_to_newest_snapshot_and_strict() -> None:
    newest = "2025-01-10T12:00"  # long ago: the reference is the group's newest snapshot
    snaps = [
        snap("newest", newest),
        snap("inside", "2025-01-03T12:00:01"),
        snap("boundary", "2025-01-03T12:00"),  # exactly 7 days older: not "within"
        snap("outside", "2025-01-01T00:00"),
    ]
    for within in (parse_duration("7d"), timedelta(days=7)):
        assert reasons(snaps, Policy(keep_within=within), UTC) == {
            "newest": ("within 7d",),
            "inside": ("within 7d",),
            "boundary": (),
            "outside": (),
        }


def test_keep_within_months_use_go_calendar_normalisation() -> None:
    # 2026-03-31 minus one month is "February 31st", which rolls over to March 3rd.
    snaps = [
        snap("newest", "2026-03-31T12:00", BERLIN),
        snap("mar3-after", "2026-03-03T12:01", BERLIN),
        snap("mar3-boundary", "2026-03-03T12:00", BERLIN),
        snap("mar2", "2026-03-02T18:00", BERLIN),
    ]
    assert kept_ids(snaps, Policy(keep_within=parse_duration("1m")), BERLIN) == [
        "newest",
        "mar3-after",
    ]


def test_keep_within_days_are_calendar_days_across_dst() -> None:
    # From 2026-03-29 12:00 CEST back one calendar day is 2026-03-28 12:00 CET: 23 hours.
    snaps = [
        snap("newest", "2026-03-29T12:00", BERLIN),
        snap("22.5h", "2026-03-28T12:30", BERLIN),
        snap("23.5h", "2026-03-28T11:30", BERLIN),
    ]
    assert kept_ids(snaps, Policy(keep_within=parse_duration("1d")), BERLIN) == [
        "newest",
        "22.5h",
    ]
    assert kept_ids(snaps, Policy(keep_within=timedelta(days=1)), BERLIN) == [
        "newest",
        "22.5h",
        "23.5h",
    ]
    assert kept_ids(snaps, Policy(keep_within=parse_duration("23h")), BERLIN) == [
        "newest",
        "22.5h",
    ]


def test_keep_within_ignores_future_snapshots_when_now_given() -> None:
    snaps = [
        snap("future", "2030-01-01T00:00"),
        snap("recent", "2026-01-09T00:00"),
        snap("old", "2025-12-01T00:00"),
    ]
    now = datetime(2026, 1, 10, tzinfo=UTC)
    policy = Policy(keep_within=parse_duration("7d"))
    with_now = only_group(apply_policy(snaps, policy, UTC, now=now))
    assert [s.id for s in kept(with_now)] == ["future", "recent"]
    without_now = only_group(apply_policy(snaps, policy, UTC))
    assert [s.id for s in kept(without_now)] == ["future"]


# --- tags and groups ---------------------------------------------------------------------


def test_keep_tags_need_every_tag_of_an_entry_and_use_no_count() -> None:
    snaps = [
        snap("newest", "2026-01-05T00:00"),
        snap("keep", "2026-01-04T00:00", tags=("keep",)),
        snap("a-only", "2026-01-03T00:00", tags=("a",)),
        snap("a-and-b", "2026-01-02T00:00", tags=("b", "a", "x")),
        snap("plain", "2026-01-01T00:00"),
    ]
    assert reasons(snaps, Policy(keep_last=1, keep_tags=("keep", "a,b")), UTC) == {
        "newest": ("last",),
        "keep": ("tag:keep",),
        "a-only": (),
        "a-and-b": ("tag:a,b",),
        "plain": (),
    }


def test_groups_by_host_and_paths_by_default() -> None:
    snaps = [
        snap("h1-new", "2026-01-02T00:00", host="h1", paths=("/b", "/a")),
        snap("h1-old", "2026-01-01T00:00", host="h1", paths=("/a", "/b")),
        snap("h2", "2026-01-01T00:00", host="h2", paths=("/a", "/b")),
        snap("h1-etc", "2026-01-01T00:00", host="h1", paths=("/etc",)),
    ]
    result = apply_policy(snaps, Policy(keep_last=1), UTC)
    assert list(result) == [
        GroupKey("h1", ("/a", "/b")),
        GroupKey("h1", ("/etc",)),
        GroupKey("h2", ("/a", "/b")),
    ]
    assert {f"{k.hostname}{k.paths}": [s.id for s in kept(v)] for k, v in result.items()} == {
        "h1('/a', '/b')": ["h1-new"],
        "h1('/etc',)": ["h1-etc"],
        "h2('/a', '/b')": ["h2"],
    }
    assert [s.id for s in removed(result[GroupKey("h1", ("/a", "/b"))])] == ["h1-old"]


def test_group_by_nothing_or_tags() -> None:
    snaps = [
        snap("x", "2026-01-03T00:00", host="h1", tags=("t",)),
        snap("y", "2026-01-02T00:00", host="h2"),
        snap("z", "2026-01-01T00:00", host="h3", tags=("t",)),
    ]
    assert kept_ids(snaps, Policy(keep_last=1, group_by=()), UTC) == ["x"]
    by_tags = apply_policy(snaps, Policy(keep_last=1, group_by=("tags",)), UTC)
    assert {k.tags: [s.id for s in kept(v)] for k, v in by_tags.items()} == {
        (): ["y"],
        ("t",): ["x"],
    }
    assert all(k.hostname is None and k.paths is None for k in by_tags)


def test_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SnapshotEntry("n", datetime(2026, 1, 1), "h", ("/",))


def test_times_in_a_local_zone_are_ordered_as_instants() -> None:
    # 02:40 CEST is an hour before 02:30 CET, though its wall clock reads later.
    first = SnapshotEntry("first", datetime(2026, 10, 25, 2, 40, tzinfo=BERLIN), "h", ("/",))
    second = SnapshotEntry(
        "second", datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN), "h", ("/",)
    )
    assert second.time == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert kept_ids([first, second], Policy(keep_last=1), BERLIN) == ["second"]


# --- parse_duration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1y2m3d4h", Duration(1, 2, 3, 4)),
        ("7d", Duration(days=7)),
        ("36h", Duration(hours=36)),
        (" 4h1y ", Duration(years=1, hours=4)),
        ("0d", Duration()),
    ],
)
def test_parse_duration_accepts_restic_format(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "1d1d", "1.5d", "7 d", "7D", "1w"])
def test_parse_duration_rejects_bad_input(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_duration_str_round_trips() -> None:
    assert str(parse_duration("4h1y")) == "1y4h"
    assert parse_duration(str(Duration(2, 0, 10, 5))) == Duration(2, 0, 10, 5)


# --- properties --------------------------------------------------------------------------

START = datetime(2026, 3, 20, tzinfo=UTC)  # spans both 2026 DST changes and a year end


@st.composite
def snapshot_lists(draw: st.DrawFn) -> list[SnapshotEntry]:
    # Minute offsets from a small pool make equal timestamps likely.
    offsets = draw(st.lists(st.integers(0, 300 * 24 * 60), min_size=1, max_size=8))
    minutes = draw(st.lists(st.sampled_from(offsets) | st.integers(0, 300 * 24 * 60), max_size=40))
    return [
        SnapshotEntry(f"id{i:03d}", START + timedelta(minutes=m), "h", ("/d",))
        for i, m in enumerate(minutes)
    ]


BUCKET_RULES = [
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
]


def kept_set(snaps: list[SnapshotEntry], policy: Policy) -> set[str]:
    result = apply_policy(snaps, policy, BERLIN)
    return {s.id for decisions in result.values() for s in kept(decisions)}


@settings(max_examples=200, deadline=None)
@given(snapshot_lists(), st.integers(1, 50))
def test_property_keep_last_keeps_exactly_min_n_count_newest(
    snaps: list[SnapshotEntry], n: int
) -> None:
    decisions = only_group(apply_policy(snaps, Policy(keep_last=n), BERLIN)) if snaps else []
    assert len(kept(decisions)) == min(n, len(snaps))
    assert [d.keep for d in decisions] == [i < n for i in range(len(snaps))]
    times = [d.snapshot.time for d in decisions]
    assert times == sorted(times, reverse=True)


@settings(max_examples=200, deadline=None)
@given(snapshot_lists(), st.sampled_from(BUCKET_RULES), st.integers(1, 20))
def test_property_kept_set_is_monotone_in_n(snaps: list[SnapshotEntry], rule: str, n: int) -> None:
    smaller = kept_set(snaps, Policy(**{rule: n}))  # type: ignore[arg-type]
    larger = kept_set(snaps, Policy(**{rule: n + 1}))  # type: ignore[arg-type]
    unlimited = kept_set(snaps, Policy(**{rule: -1}))  # type: ignore[arg-type]
    assert smaller <= larger <= unlimited


@settings(max_examples=200, deadline=None)
@given(snapshot_lists(), st.integers(1, 10), st.randoms())
def test_property_daily_keeps_newest_of_the_newest_n_days_whatever_the_order(
    snaps: list[SnapshotEntry], n: int, rnd: random.Random
) -> None:
    if not snaps:
        return
    shuffled = list(snaps)
    rnd.shuffle(shuffled)
    decisions = only_group(apply_policy(shuffled, Policy(keep_daily=n), BERLIN))
    assert decisions == only_group(apply_policy(snaps, Policy(keep_daily=n), BERLIN))
    by_day: dict[str, list[SnapshotEntry]] = {}
    for s in sorted(snaps, key=lambda s: (-s.time.timestamp(), s.id)):
        by_day.setdefault(s.time.astimezone(BERLIN).date().isoformat(), []).append(s)
    newest_days = sorted(by_day, reverse=True)[:n]
    expected = {by_day[d][0].id for d in newest_days}
    if len(by_day) < n:  # counts left over: restic also keeps the oldest snapshot
        expected.add(decisions[-1].snapshot.id)
    assert {s.id for s in kept(decisions)} == expected
    assert all(bool(d.reasons) == d.keep for d in decisions)
