"""When the daemon's cron jobs run. Pure: time comes from a ``Clock``; nothing sleeps here.

Invariants:

* A cron expression has 5 fields (minute hour day-of-month month day-of-week) or 6, where
  the **sixth is seconds** (croniter's convention, not Quartz's seconds-first):
  ``"*/5 * * * * 30"`` runs at second 30 of every fifth minute. The aliases ``@yearly``
  (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly``
  stand for their Vixie cron expansions. Nothing else is accepted (no ``@reboot``, no year
  field); an expression that can never fire is refused.
* The wall clock of a cron expression is read in the schedule's zone (local by default;
  ``next_run`` uses the zone of ``after``). ``next_run(cron, after) > after``, always.
* Daylight saving time, as Vixie cron does it: a time skipped by a spring-forward change
  runs at the first instant after the gap; in the hour repeated by a fall-back change a
  *fixed-time* job (neither minute nor hour field starting with ``*``) runs once, at the
  first occurrence, while a wildcard job (``0 * * * *``) runs in both hours.
* ``Schedule`` keeps one pending time per job; ``due()`` lists the jobs whose pending
  time has come, and it stays so until the runner calls ``mark_run``. A loop that wakes
  late (suspend, long sleep) runs a job once, not once per slot it slept through.
  ``catch_up`` decides what happens to slots missed while the daemon was down (given as
  ``last_runs``) or while the job itself was still running: with it, one run as soon as
  possible; without it, they are skipped and the job waits for its next slot.
* A pending slot ``due()`` reports more than ``LATE`` seconds after its time (the wall
  clock jumped forward, the machine was suspended) is still run once; with ``catch_up``
  it is reported as a catch-up (``Due.catch_up``, latched until ``mark_run``), as a slot
  missed while the daemon was down is. The runner polls ``due()`` at least every second
  and queues a job on the first report, so a slot it sees on time is not flagged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Generic, Protocol, TypeVar

from croniter import CroniterBadDateError, CroniterError, croniter

from casbackup.clock import Clock
from casbackup.errors import UsageError

# Far enough for "29 Feb on a Monday" (28 years), close enough to fail fast otherwise.
_MAX_YEARS_BETWEEN_MATCHES = 30
_CHECK_FROM = datetime(2000, 1, 1, tzinfo=UTC)
# a pending slot first seen this many seconds after its time was missed, not run on time
LATE = 60.0


ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}  # fmt: skip


def expand(cron: str) -> str:
    """``cron`` with an ``@alias`` replaced by its 5-field expansion."""
    return ALIASES.get(cron.strip().lower(), cron)


def _fields(cron: str) -> list[str]:
    if cron.strip().startswith("@") and cron.strip().lower() not in ALIASES:
        raise UsageError(
            f"invalid cron expression {cron!r}: known aliases are {', '.join(ALIASES)}"
        )
    cron = expand(cron)
    fields = cron.split()
    if len(fields) not in (5, 6):
        raise UsageError(
            f"invalid cron expression {cron!r}: expected 5 fields (minute hour day month "
            "weekday) or 6 with seconds last"
        )
    try:
        croniter(cron)
    except (CroniterError, ValueError) as e:
        # croniter says "[expr] is not acceptable, out of range": keep the last part
        reason = re.sub(r"^\[.*?\] (is not acceptable[,.]? ?)?", "", str(e)) or "not understood"
        raise UsageError(f"invalid cron expression {cron!r}: {reason}") from e
    return fields


def validate_cron(cron: str) -> None:
    """Raise ``UsageError`` unless ``cron`` is a 5- or 6-field expression that can fire."""
    _fields(cron)
    try:
        next_run(cron, _CHECK_FROM)
    except CroniterBadDateError:
        raise UsageError(f"invalid cron expression {cron!r}: it never fires") from None


def _is_repeat(t: datetime) -> bool:
    """True for the second occurrence of a wall time repeated by a fall-back change."""
    return t.fold == 1 and t.replace(fold=0).utcoffset() != t.utcoffset()


def _utc(t: datetime) -> datetime:
    """Compare instants in UTC: Python compares two times of one zone by wall clock,
    ignoring ``fold``, which is wrong in the hour repeated at a fall-back change."""
    return t.astimezone(UTC)


def next_run(cron: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` fires, in ``after``'s zone."""
    if after.tzinfo is None:
        raise ValueError("next_run needs a timezone-aware datetime")
    fields = _fields(cron)
    fixed_time = not (fields[0].startswith("*") or fields[1].startswith("*"))
    it = croniter(expand(cron), after, max_years_between_matches=_MAX_YEARS_BETWEEN_MATCHES)
    while True:
        t: datetime = it.get_next(datetime)
        if not (fixed_time and _is_repeat(t)):
            return t


def missed_runs(cron: str, last_run: datetime, now: datetime, limit: int = 1000) -> list[datetime]:
    """The times ``cron`` fired in ``(last_run, now]``, oldest first, at most ``limit``."""
    missed: list[datetime] = []
    t = next_run(cron, last_run)
    while _utc(t) <= _utc(now) and len(missed) < limit:
        missed.append(t)
        t = next_run(cron, t)
    return missed


class ScheduledJob(Protocol):
    """What a ``Schedule`` needs of a job (``config.JobConfig`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def cron(self) -> str: ...

    @property
    def catch_up(self) -> bool: ...


J = TypeVar("J", bound=ScheduledJob)


@dataclass(frozen=True, slots=True)
class Due(Generic[J]):
    job: J
    scheduled: datetime  # the slot this run is for
    catch_up: bool  # a slot missed while the daemon was down or the job was running


class Schedule(Generic[J]):
    """Pending times of cron jobs, advanced by ``mark_run``. Times it returns are UTC."""

    def __init__(
        self,
        jobs: Iterable[J],
        clock: Clock,
        tz: tzinfo | None = None,
        last_runs: Mapping[str, datetime] | None = None,
    ) -> None:
        self._clock = clock
        self._tz = tz
        self._jobs: dict[str, J] = {}
        self._pending: dict[str, tuple[datetime, bool]] = {}  # UTC time, catch-up
        now = self.now()
        for job in jobs:
            if job.name in self._jobs:
                raise ValueError(f"duplicate job name {job.name!r}")
            self._jobs[job.name] = job
            last = (last_runs or {}).get(job.name)
            missed = missed_runs(job.cron, self._local(last), now, 1) if last else []
            if job.catch_up and missed:
                self._pending[job.name] = (_utc(missed[0]), True)
            else:
                self._pending[job.name] = (self._next(job, now), False)

    def _local(self, t: datetime) -> datetime:
        return t.astimezone(self._tz)

    def _next(self, job: J, after: datetime) -> datetime:
        return _utc(next_run(job.cron, self._local(after)))

    def now(self) -> datetime:
        return self._clock.now().astimezone(UTC)

    @property
    def jobs(self) -> Mapping[str, J]:
        return self._jobs

    def pending(self, name: str) -> datetime:
        """When job ``name`` is next due (possibly in the past, if it is due now)."""
        return self._pending[name][0]

    def due(self) -> list[Due[J]]:
        """The jobs whose pending time has come, earliest first (then by name)."""
        now = self.now()
        ready: list[Due[J]] = []
        for name, (at, catch_up) in self._pending.items():
            if at > now:
                continue
            job = self._jobs[name]
            if job.catch_up and not catch_up and (now - at).total_seconds() > LATE:
                catch_up = True  # missed (a jump forward, a suspend): latched until mark_run
                self._pending[name] = (at, True)
            ready.append(Due(job, at, catch_up))
        return sorted(ready, key=lambda d: (d.scheduled, d.job.name))

    def next_wakeup(self) -> datetime | None:
        """The earliest pending time of any job (None without jobs)."""
        return min((at for at, _ in self._pending.values()), default=None)

    def mark_run(self, name: str, started: datetime, finished: datetime | None = None) -> None:
        """Record that job ``name`` ran from ``started`` to ``finished`` (default: started).

        Slots that passed while it ran are caught up once if the job has ``catch_up``,
        else skipped."""
        job = self._jobs[name]
        started = _utc(started)
        end = max(started, _utc(finished or started))
        if job.catch_up:
            following = self._next(job, started)
            self._pending[name] = (following, following <= end)
        else:
            self._pending[name] = (self._next(job, end), False)
