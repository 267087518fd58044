"""Retention policy: which snapshots ``forget`` keeps. Pure: no I/O, no clock, no store.

The rules are restic's ``forget`` policy (``internal/data/snapshot_policy.go``):

* Snapshots are split into groups by ``Policy.group_by`` (any of ``host``, ``paths``,
  ``tags``; paths and tags compare as sorted tuples). Every rule applies per group.
* Within a group snapshots are walked **newest first**. Equal times are ordered by id
  (ascending), so the outcome never depends on the order of the input.
* ``keep_last N`` keeps the N newest snapshots.
* ``keep_hourly/daily/weekly/monthly/yearly N``: the time of each snapshot, seen in the
  policy's time zone (local by default), falls into a bucket (hour, day, ISO week,
  month, year of the wall clock). The newest snapshot of each bucket is kept, until N
  buckets have been used. As in restic since 0.17, if a rule still has buckets left when
  the oldest snapshot of the group is reached, the oldest snapshot is kept too
  (reason ``"oldest daily …"``), so a short history is not cut short. ``-1`` means
  "unlimited"; ``None`` and ``0`` switch a rule off.
* ``keep_within D`` keeps every snapshot strictly newer than ``latest - D``, where
  ``latest`` is the newest snapshot of the group (ignoring snapshots after ``now``, when
  ``now`` is given). A ``Duration`` (``parse_duration("1y2m3d4h")``) subtracts years,
  months and days on the calendar in the policy's time zone, then hours, as restic does;
  a ``timedelta`` subtracts an exact span.
* ``keep_tags``: each entry is a comma-separated tag list; a snapshot carrying all tags
  of any entry is kept. Tags do not use up any count.
* A snapshot is kept when any rule keeps it; ``Decision.reasons`` names every rule that
  did. A policy with no rule at all is refused (``UsageError("no policy given")``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from casbackup.errors import UsageError
from casbackup.ops.groupkey import GROUP_FIELDS, GroupKey


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """What retention needs to know about one snapshot. ``time`` must be tz-aware; it is
    kept in UTC (Python orders two times of one zone by wall clock, ignoring ``fold``)."""

    id: str
    time: datetime
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError(f"snapshot {self.id}: time must be timezone-aware")
        object.__setattr__(self, "time", self.time.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class Duration:
    """A calendar span for ``keep_within``: restic's ``6y5m234d37h`` format."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __str__(self) -> str:
        parts = ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h"))
        return "".join(f"{n}{unit}" for n, unit in parts if n) or "0h"

    def before(self, t: datetime, tz: tzinfo | None) -> datetime:
        """``t`` minus this span: calendar arithmetic on the wall clock in ``tz`` (Go's
        ``AddDate``, which rolls Mar 31 - 1m over to Mar 3), then exact hours."""
        local = t.astimezone(tz)
        month0 = local.month - 1 - self.months
        year = local.year - self.years + month0 // 12
        try:
            day = date(year, month0 % 12 + 1, 1) + timedelta(days=local.day - 1 - self.days)
            moved = local.replace(year=day.year, month=day.month, day=day.day)
            return moved.astimezone(UTC) - timedelta(hours=self.hours)
        except (ValueError, OverflowError):  # before year 1: nothing is older
            return datetime.min.replace(tzinfo=UTC)


_DURATION_RE = re.compile(r"(\d+)([ymdh])")


def parse_duration(text: str) -> Duration:
    """Parse restic's duration format, e.g. ``"1y2m3d4h"``, ``"7d"``, ``"36h"``.

    Units: y(ears), m(onths), d(ays), h(ours); each at most once; no sign."""
    s = text.strip()
    pos, seen, values = 0, set(), {"y": 0, "m": 0, "d": 0, "h": 0}
    while pos < len(s):
        m = _DURATION_RE.match(s, pos)
        if m is None:
            raise UsageError(f"invalid duration {text!r}: expected e.g. '7d' or '1y2m3d4h'")
        unit = m.group(2)
        if unit in seen:
            raise UsageError(f"invalid duration {text!r}: unit {unit!r} given twice")
        seen.add(unit)
        values[unit] = int(m.group(1))
        pos = m.end()
    if not seen:
        raise UsageError(f"invalid duration {text!r}: empty")
    return Duration(values["y"], values["m"], values["d"], values["h"])


@dataclass(frozen=True, slots=True)
class Policy:
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: Duration | timedelta | None = None
    keep_tags: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ("host", "paths")

    def __post_init__(self) -> None:
        for name, n in self._counts():
            if n is not None and (isinstance(n, bool) or n < -1):
                raise UsageError(f"{name} must be a count, or -1 for unlimited, not {n!r}")
        for g in self.group_by:
            if g not in GROUP_FIELDS:
                raise UsageError(f"invalid group_by {g!r}: choose from host, paths, tags")
        if isinstance(self.keep_within, timedelta) and self.keep_within < timedelta(0):
            raise UsageError("keep_within must not be negative")
        for entry in self.keep_tags:
            if not all(tag.strip() for tag in entry.split(",")):
                raise UsageError(f"invalid keep_tags entry {entry!r}: empty tag")

    def _counts(self) -> list[tuple[str, int | None]]:
        return [(rule.name, getattr(self, rule.name)) for rule in _BUCKET_RULES]

    def is_empty(self) -> bool:
        within = self.keep_within
        no_within = within is None or within == timedelta(0) or within == Duration()
        return no_within and not self.keep_tags and all(not n for _, n in self._counts())


@dataclass(frozen=True, slots=True)
class Decision:
    snapshot: SnapshotEntry
    keep: bool
    reasons: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class _BucketRule:
    name: str  # the Policy field
    label: str  # the reason's first word
    bucket: Callable[[datetime], str] | None  # None: every snapshot is its own bucket


def _week(t: datetime) -> str:
    year, week, _ = t.isocalendar()
    return f"{year}-W{week:02d}"


_BUCKET_RULES = (
    _BucketRule("keep_last", "last", None),
    _BucketRule("keep_hourly", "hourly", lambda t: t.strftime("%Y-%m-%dT%H")),
    _BucketRule("keep_daily", "daily", lambda t: t.strftime("%Y-%m-%d")),
    _BucketRule("keep_weekly", "weekly", _week),
    _BucketRule("keep_monthly", "monthly", lambda t: t.strftime("%Y-%m")),
    _BucketRule("keep_yearly", "yearly", lambda t: f"{t.year:04d}"),
)


def _format_within(within: Duration | timedelta) -> str:
    if isinstance(within, Duration):
        return str(within)
    seconds = int(within.total_seconds())
    if within == timedelta(seconds=seconds):
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds and seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    return str(within)


def group_key(snapshot: SnapshotEntry, group_by: Sequence[str]) -> GroupKey:
    return GroupKey(
        hostname=snapshot.hostname if "host" in group_by else None,
        paths=tuple(sorted(snapshot.paths)) if "paths" in group_by else None,
        tags=tuple(sorted(snapshot.tags)) if "tags" in group_by else None,
    )


def _sort_key(key: GroupKey) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    return (key.hostname or "", key.paths or (), key.tags or ())


def apply_policy(
    snapshots: Iterable[SnapshotEntry],
    policy: Policy,
    tz: tzinfo | None = None,
    now: datetime | None = None,
) -> dict[GroupKey, list[Decision]]:
    """Decide for every snapshot whether ``policy`` keeps it.

    ``tz`` is the zone whose wall clock defines the buckets (None: the local zone).
    ``now``, when given, keeps future-dated snapshots from moving ``keep_within``'s
    reference point. Returns, per group (in sorted group order), one decision per
    snapshot, newest first."""
    if policy.is_empty():
        raise UsageError("no policy given")
    groups: dict[GroupKey, list[SnapshotEntry]] = {}
    for snap in snapshots:
        groups.setdefault(group_key(snap, policy.group_by), []).append(snap)
    return {
        key: _apply_to_group(groups[key], policy, tz, now) for key in sorted(groups, key=_sort_key)
    }


def _within_cutoff(
    snaps: Sequence[SnapshotEntry],
    within: Duration | timedelta | None,
    tz: tzinfo | None,
    now: datetime | None,
) -> datetime | None:
    """Snapshots strictly newer than the result are kept by ``keep_within``."""
    if within is None or within == timedelta(0) or within == Duration():
        return None
    times = [s.time for s in snaps if now is None or s.time <= now]
    if not times:  # every snapshot is in the future: like restic, keep them all
        return datetime.min.replace(tzinfo=UTC)
    latest = max(times)
    if isinstance(within, Duration):
        return within.before(latest, tz)
    try:
        return latest - within
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _apply_to_group(
    snaps: list[SnapshotEntry], policy: Policy, tz: tzinfo | None, now: datetime | None
) -> list[Decision]:
    ordered = sorted(snaps, key=lambda s: s.id)
    ordered.sort(key=lambda s: s.time, reverse=True)  # stable: equal times stay by id
    within = policy.keep_within
    cutoff = _within_cutoff(ordered, within, tz, now)
    tag_sets = [(e, {t.strip() for t in e.split(",")}) for e in policy.keep_tags]

    remaining = {r.name: getattr(policy, r.name) or 0 for r in _BUCKET_RULES}
    last_bucket: dict[str, str | None] = {r.name: None for r in _BUCKET_RULES}
    decisions = []
    for nr, snap in enumerate(ordered):
        reasons = [f"tag:{entry}" for entry, tags in tag_sets if tags <= set(snap.tags)]
        if cutoff is not None and within is not None and snap.time > cutoff:
            reasons.append(f"within {_format_within(within)}")
        local = snap.time.astimezone(tz)
        is_oldest = nr == len(ordered) - 1
        for rule in _BUCKET_RULES:
            if remaining[rule.name] == 0:
                continue
            bucket = rule.bucket(local) if rule.bucket else str(nr)
            if bucket != last_bucket[rule.name]:
                label = rule.label if rule.bucket is None else f"{rule.label} {bucket}"
            elif is_oldest:
                label = f"oldest {rule.label} {bucket}"
            else:
                continue
            last_bucket[rule.name] = bucket
            if remaining[rule.name] > 0:
                remaining[rule.name] -= 1
            reasons.append(label)
        decisions.append(Decision(snap, bool(reasons), tuple(reasons)))
    return decisions


def kept(decisions: Iterable[Decision]) -> list[SnapshotEntry]:
    return [d.snapshot for d in decisions if d.keep]


def removed(decisions: Iterable[Decision]) -> list[SnapshotEntry]:
    return [d.snapshot for d in decisions if not d.keep]
