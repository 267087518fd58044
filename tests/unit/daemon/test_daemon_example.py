"""examples/casbackup.yaml: it validates, and its jobs run when its comments say."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from casbackup.clock import FakeClock
from casbackup.daemon.config import Config, JobConfig, PasswordRef, load_config
from casbackup.daemon.schedule import Schedule, next_run
from casbackup.ops.retention import Policy

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "casbackup.yaml"
BERLIN = ZoneInfo("Europe/Berlin")


def example() -> Config:
    return load_config(EXAMPLE)


def test_example_stores_sources_watch_and_metrics() -> None:
    config = example()
    assert config.stores["local"].url == "/srv/casbackup"
    assert config.stores["local"].password == PasswordRef("file", "/etc/casbackup/local.password")
    assert config.stores["offsite"].url.startswith("s3://")
    assert config.stores["offsite"].password == PasswordRef(
        "command", "pass show casbackup/offsite"
    )
    assert config.sources["home"].paths == ("/home",)
    assert config.sources["home"].one_file_system
    (watch,) = config.watches
    assert (watch.source, watch.store, watch.sync_to) == ("documents", "local", ("offsite",))
    assert (watch.debounce, watch.max_delay) == (2.0, 60.0)
    assert config.metrics is not None
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9900)


def test_example_jobs_are_the_best_practice() -> None:
    jobs = example().jobs
    kinds = {
        name: (j.type, j.backup_type if j.type == "backup" else None) for name, j in jobs.items()
    }
    assert kinds == {
        "weekly-full": ("backup", "full"),
        "daily-incremental": ("backup", "incremental"),
        "hourly-snapshot": ("backup", "snapshot"),
        "daily-forget": ("forget", None),
        "weekly-verify": ("verify", None),
        "daily-sync": ("sync", None),
        "postgres-shop": ("dump", None),
        "mariadb-all": ("dump", None),
        "sqlite-app": ("dump", None),
    }
    assert {jobs[n].filename for n in ("postgres-shop", "mariadb-all", "sqlite-app")} == {
        "shop.pgdump", "mariadb.sql", "app.sql"}
    sqlite = jobs["sqlite-app"].hooks
    assert sqlite is not None and sqlite.before and sqlite.finally_ and sqlite.timeout == 120
    cfg = example()
    assert cfg.hooks is not None and cfg.hooks.on_error
    assert cfg.notify is not None and cfg.notify.events == ("failure",)
    assert cfg.notify.healthchecks is not None
    assert jobs["daily-forget"].policy == Policy(
        keep_hourly=24, keep_daily=7, keep_weekly=4, keep_monthly=12
    )
    assert jobs["daily-forget"].prune
    assert jobs["weekly-verify"].read_data_subset == "10%"
    assert (jobs["daily-sync"].store, jobs["daily-sync"].to) == ("local", "offsite")
    assert all(j.store == "local" for j in jobs.values())


def test_example_next_runs_from_a_wednesday_noon() -> None:
    now = datetime(2026, 11, 18, 12, 0, tzinfo=BERLIN)  # a Wednesday
    nexts = {name: next_run(j.cron, now) for name, j in example().jobs.items()}
    assert nexts == {
        "weekly-full": datetime(2026, 11, 22, 3, 0, tzinfo=BERLIN),  # Sunday
        "daily-incremental": datetime(2026, 11, 19, 3, 0, tzinfo=BERLIN),
        "hourly-snapshot": datetime(2026, 11, 18, 12, 30, tzinfo=BERLIN),
        "daily-forget": datetime(2026, 11, 19, 5, 0, tzinfo=BERLIN),
        "weekly-verify": datetime(2026, 11, 22, 6, 0, tzinfo=BERLIN),
        "daily-sync": datetime(2026, 11, 19, 7, 0, tzinfo=BERLIN),
        "postgres-shop": datetime(2026, 11, 19, 2, 15, tzinfo=BERLIN),
        "mariadb-all": datetime(2026, 11, 19, 2, 20, tzinfo=BERLIN),
        "sqlite-app": datetime(2026, 11, 19, 2, 25, tzinfo=BERLIN),
    }


def test_example_week_of_runs() -> None:
    start = datetime(2026, 11, 16, 0, 0, tzinfo=BERLIN)  # Monday
    clock = FakeClock(start.timestamp())
    schedule: Schedule[JobConfig] = Schedule(example().jobs.values(), clock, BERLIN)
    ran: list[tuple[str, datetime]] = []
    end = start + timedelta(days=7)
    while (wakeup := schedule.next_wakeup()) is not None and wakeup < end:
        clock.t = wakeup.timestamp()
        for due in schedule.due():
            ran.append((due.job.name, due.scheduled.astimezone(BERLIN)))
            schedule.mark_run(due.job.name, schedule.now())
    assert Counter(name for name, _ in ran) == {
        "weekly-full": 1,
        "daily-incremental": 6,
        "hourly-snapshot": 7 * 24,
        "daily-forget": 7,
        "weekly-verify": 1,
        "daily-sync": 7,
        "postgres-shop": 7,
        "mariadb-all": 7,
        "sqlite-app": 7,
    }
    backups_at_3 = {t.strftime("%a") for name, t in ran if name.endswith(("full", "incremental"))}
    assert backups_at_3 == {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
    assert [t.strftime("%a %H:%M") for name, t in ran if name == "weekly-full"] == ["Sun 03:00"]
    assert all(t.astimezone(UTC) < end for _, t in ran)
