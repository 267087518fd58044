"""What ``/healthz`` answers: is every job succeeding on time? Pure: the time is an argument.

Invariants:

* A job is **failing** when its last finished run (after its retries) failed.
* A job is **overdue** when it has not succeeded by its deadline. From the job's last
  success (or, if it never succeeded, from when the daemon started), the deadline is the
  next cron slot plus ``slack`` times the cron interval that follows that slot
  (``next_run(slot) - slot``), so irregular schedules (``0 3 * * 1-6``) get the interval
  they actually have. ``slack=0.5`` allows a run to finish half an interval late.
* A watch is unhealthy when it stopped (its thread ended with an error).
* Healthy means: no failing job, no overdue job, no stopped watch. The report lists
  every problem with a reason, never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

from .schedule import next_run


class CronJob(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def cron(self) -> str: ...


class JobRecord(Protocol):
    """What health needs of a job's state (``state.JobState`` has it)."""

    @property
    def last_result(self) -> str | None: ...

    @property
    def last_success(self) -> datetime | None: ...

    @property
    def last_error(self) -> str | None: ...


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    failing: list[dict[str, Any]] = field(default_factory=list)
    overdue: list[dict[str, Any]] = field(default_factory=list)
    watches: list[dict[str, Any]] = field(default_factory=list)

    def to_map(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unhealthy",
            "failing": self.failing,
            "overdue": self.overdue,
            "watches": self.watches,
        }


def deadline(cron: str, since: datetime, slack: float, tz: tzinfo | None = None) -> datetime:
    """When a job that last succeeded (or was started) at ``since`` becomes overdue."""
    slot = next_run(cron, since.astimezone(tz))
    interval = next_run(cron, slot) - slot
    return (slot + interval * slack).astimezone(UTC)


def check(
    jobs: Iterable[CronJob],
    records: Mapping[str, JobRecord],
    now: datetime,
    since: datetime | Mapping[str, datetime],
    slack: float = 0.5,
    tz: tzinfo | None = None,
    dead_watches: Mapping[str, str] | None = None,
) -> HealthReport:
    """Check every job in ``jobs`` against its record. ``since`` is when the daemon
    started, or per job when it was added: the baseline of a job that never succeeded."""
    failing: list[dict[str, Any]] = []
    overdue: list[dict[str, Any]] = []
    for job in jobs:
        rec = records.get(job.name)
        if rec is not None and rec.last_result == "failure":
            failing.append(
                {"job": job.name, "reason": "last run failed", "error": rec.last_error}
            )
        success = rec.last_success if rec is not None else None
        added = since if isinstance(since, datetime) else since.get(job.name, now)
        base = success if success is not None else added
        due_by = deadline(job.cron, base, slack, tz)
        if now.astimezone(UTC) > due_by:
            overdue.append(
                {
                    "job": job.name,
                    "reason": f"no successful run since {base.astimezone(UTC).isoformat()}"
                    if success is not None
                    else "no successful run yet",
                    "deadline": due_by.isoformat(),
                    "last_success": success.astimezone(UTC).isoformat() if success else None,
                }
            )
    watches = [
        {"watch": name, "reason": reason} for name, reason in sorted((dead_watches or {}).items())
    ]
    return HealthReport(not (failing or overdue or watches), failing, overdue, watches)
