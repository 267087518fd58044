"""/healthz logic (casbackup.daemon.health) with a fake clock: failing and overdue jobs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from casbackup.daemon.health import check, deadline
from casbackup.daemon.state import JobState


@dataclass(frozen=True)
class Job:
    name: str
    cron: str


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


DAILY = Job("daily", "0 3 * * *")
START = t("2024-05-01 02:00")  # a Wednesday


def test_health_job_never_run_is_overdue_half_an_interval_after_its_first_slot() -> None:
    assert deadline(DAILY.cron, START, 0.5, UTC) == t("2024-05-01 15:00")
    assert check([DAILY], {}, t("2024-05-01 14:59"), START, 0.5, UTC).ok
    rep = check([DAILY], {}, t("2024-05-01 15:01"), START, 0.5, UTC)
    assert not rep.ok and not rep.failing
    (overdue,) = rep.overdue
    assert overdue["job"] == "daily" and overdue["reason"] == "no successful run yet"
    assert overdue["deadline"] == "2024-05-01T15:00:00+00:00"


def test_health_success_moves_the_deadline_to_the_next_slot() -> None:
    rec = {"daily": JobState(last_result="success", last_success=t("2024-05-01 03:10"))}
    assert check([DAILY], rec, t("2024-05-02 14:59"), START, 0.5, UTC).ok
    rep = check([DAILY], rec, t("2024-05-02 15:01"), START, 0.5, UTC)
    assert [o["job"] for o in rep.overdue] == ["daily"]
    assert rep.overdue[0]["last_success"] == "2024-05-01T03:10:00+00:00"
    assert "no successful run since 2024-05-01T03:10:00+00:00" in rep.overdue[0]["reason"]


def test_health_failed_last_run_is_failing_even_within_the_interval() -> None:
    rec = {"daily": JobState(last_result="failure", last_success=t("2024-05-01 03:10"),
                             last_error="store is locked")}
    rep = check([DAILY], rec, t("2024-05-01 04:00"), START, 0.5, UTC)
    assert not rep.ok and not rep.overdue
    assert rep.failing == [{"job": "daily", "reason": "last run failed",
                            "error": "store is locked"}]


def test_health_irregular_schedule_uses_the_interval_after_the_missed_slot() -> None:
    weekdays = Job("weekdays", "0 3 * * 1-6")  # no run on Sunday
    saturday = {"weekdays": JobState(last_result="success", last_success=t("2024-05-04 03:05"))}
    assert check([weekdays], saturday, t("2024-05-05 23:00"), START, 0.5, UTC).ok  # Sunday
    assert check([weekdays], saturday, t("2024-05-06 14:59"), START, 0.5, UTC).ok
    assert not check([weekdays], saturday, t("2024-05-06 15:01"), START, 0.5, UTC).ok


def test_health_slack_and_seconds_cron() -> None:
    every10 = Job("fast", "* * * * * */10")  # 6 fields: seconds last
    rec = {"fast": JobState(last_result="success", last_success=t("2024-05-01 00:00:01"))}
    assert check([every10], rec, t("2024-05-01 00:00:14"), START, 0.5, UTC).ok
    assert not check([every10], rec, t("2024-05-01 00:00:16"), START, 0.5, UTC).ok
    assert not check([every10], rec, t("2024-05-01 00:00:10.5"), START, 0.0, UTC).ok
    assert check([every10], rec, t("2024-05-01 00:00:29"), START, 2.0, UTC).ok


def test_health_baseline_per_job_for_jobs_added_later() -> None:
    added = {"daily": t("2024-05-03 12:00")}  # added by a reload long after the start
    assert check([DAILY], {}, t("2024-05-04 14:00"), added, 0.5, UTC).ok
    assert not check([DAILY], {}, t("2024-05-04 16:00"), added, 0.5, UTC).ok


def test_health_dead_watch_is_unhealthy_and_report_is_json() -> None:
    rep = check([], {}, t("2024-05-01 04:00"), START, 0.5, UTC,
                {"docs->local": "no such directory"})
    assert not rep.ok
    m = json.loads(json.dumps(rep.to_map()))
    assert m == {"status": "unhealthy", "failing": [], "overdue": [],
                 "watches": [{"watch": "docs->local", "reason": "no such directory"}]}
    assert check([], {}, t("2024-05-01 04:00"), START).to_map()["status"] == "ok"


def test_health_many_jobs_list_each_problem() -> None:
    jobs = [DAILY, Job("hourly", "0 * * * *"), Job("ok", "0 3 * * *")]
    rec = {"hourly": JobState(last_result="failure", last_success=START + timedelta(minutes=5)),
           "ok": JobState(last_result="success", last_success=t("2024-05-02 03:01"))}
    rep = check(jobs, rec, t("2024-05-02 16:00"), START, 0.5, UTC)
    assert [f["job"] for f in rep.failing] == ["hourly"]
    assert [o["job"] for o in rep.overdue] == ["daily", "hourly"]
