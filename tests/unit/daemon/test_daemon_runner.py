"""The daemon loop (casbackup.daemon.runner) on a fake clock with fake job processes:
one job per store, retries, catch-up from the state file, reload, stop."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from casbackup.clock import FakeClock
from casbackup.daemon.config import Config
from casbackup.daemon.jobs import JobOutcome
from casbackup.daemon.runner import Daemon
from casbackup.daemon.state import JobState, State, load_state, save_state

BASE = """\
stores:
  a: {url: a}
  b: {url: b}
sources:
  src: {paths: [.]}
state: state.json
jobs:
"""
START = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC).timestamp()


class FakeProc:
    """Runs nothing: ``finish(name, ...)`` decides when and how each attempt ends."""

    started: list[str]
    gates: dict[str, threading.Event]
    results: dict[str, list[str]]

    def __init__(self, config: Config, name: str) -> None:
        self.name, self.job = name, config.jobs[name]
        self.pid = 4242
        self.stop_reason: str | None = None
        self.gate = FakeProc.gates.setdefault(name, threading.Event())

    def start(self) -> None:
        FakeProc.started.append(self.name)

    def wait(self, timeout: float | None) -> JobOutcome:
        self.gate.wait(10)
        self.gate.clear()
        queued = FakeProc.results.get(self.name)
        result = queued.pop(0) if queued else "success"
        ok = result == "success"
        return JobOutcome(self.name, self.job.type, self.job.store, result, 0.0, 0.5,
                          None if ok else "boom", 0 if ok else 1,
                          stopped=self.stop_reason is not None)

    def stop(self, reason: str = "") -> None:
        self.stop_reason = reason
        self.gate.set()


class Harness:
    def __init__(self, tmp: Path, jobs: str, state: State | None = None) -> None:
        FakeProc.started, FakeProc.gates, FakeProc.results = [], {}, {}
        self.path = tmp / "casbackup.yaml"
        self.path.write_text(BASE + jobs)
        if state is not None:
            save_state(tmp / "state.json", state)
        self.clock = FakeClock(START)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.d = Daemon(self.path, lambda e, **f: self.events.append((e, f)), clock=self.clock,
                        tz=UTC, stop_timeout=0.0, process=FakeProc)  # type: ignore[arg-type]

    def names(self, event: str) -> list[str]:
        return [f.get("job", "") for e, f in self.events if e == event]

    def finish(self, name: str) -> None:
        n = self.d.done.qsize()
        FakeProc.gates.setdefault(name, threading.Event()).set()
        deadline = time.monotonic() + 60
        while self.d.done.qsize() == n:
            assert time.monotonic() < deadline, f"{name} did not finish"
            time.sleep(0.005)
        self.d.step()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.d.step()


def test_runner_one_job_per_store_others_queue(tmp_path: Path) -> None:
    h = Harness(tmp_path, """\
  a1: {type: gc, cron: "* * * * * */10", store: a}
  a2: {type: gc, cron: "* * * * * */10", store: a}
  b1: {type: gc, cron: "* * * * * */10", store: b}
  ab: {type: sync, cron: "* * * * * */10", store: b, to: a}
""")
    h.d.step()
    assert FakeProc.started == []
    h.advance(9)  # 12:00:10
    assert FakeProc.started == ["a1", "b1"]  # a2 waits for a, ab for a and b
    h.finish("a1")
    assert FakeProc.started == ["a1", "b1", "a2"]
    h.finish("b1")
    h.finish("a2")
    assert FakeProc.started == ["a1", "b1", "a2", "ab"]
    h.finish("ab")
    assert h.names("job-success") == ["a1", "b1", "a2", "ab"]
    assert h.d.queue.busy == {} and h.d.queue.runs == {}
    st = load_state(tmp_path / "state.json")
    assert st.jobs["ab"].last_result == "success"
    assert st.jobs["ab"].next_run == datetime(2024, 5, 1, 12, 0, 20, tzinfo=UTC)


def test_runner_retries_after_the_delay_without_holding_the_store(tmp_path: Path) -> None:
    h = Harness(tmp_path, """\
  flaky: {type: gc, cron: "0 * * * *", store: a, retries: 2, retry_delay: 30}
  other: {type: gc, cron: "0 * * * *", store: a}
""")
    FakeProc.results["flaky"] = ["failure", "failure", "failure"]
    h.advance(3600)  # 13:00:01: both due
    assert FakeProc.started == ["flaky"]
    h.finish("flaky")
    assert h.names("job-retry") == ["flaky"]
    assert FakeProc.started == ["flaky", "other"]  # the store is free during the delay
    h.finish("other")
    h.advance(29)
    assert FakeProc.started == ["flaky", "other"]
    h.advance(2)
    assert FakeProc.started == ["flaky", "other", "flaky"]
    h.finish("flaky")
    h.advance(31)
    h.finish("flaky")
    assert h.names("job-retry") == ["flaky", "flaky"]
    assert h.names("job-failure") == ["flaky"]
    js = h.d.state.jobs["flaky"]
    assert (js.last_result, js.runs, js.failures, js.last_success) == ("failure", 3, 3, None)
    assert not h.d.health().ok and h.d.health().failing[0]["job"] == "flaky"


def test_runner_catch_up_after_downtime(tmp_path: Path) -> None:
    long_ago = datetime.fromtimestamp(START, UTC) - timedelta(days=2)
    state = State(jobs={"caught": JobState(last_run=long_ago, last_result="success"),
                        "skipped": JobState(last_run=long_ago, last_result="success")})
    h = Harness(tmp_path, """\
  caught: {type: gc, cron: "0 3 * * *", store: a, catch_up: true}
  skipped: {type: gc, cron: "0 3 * * *", store: b}
""", state)
    h.d.step()
    assert FakeProc.started == ["caught"]  # once, not once per missed day
    h.finish("caught")
    assert h.d.schedule.pending("caught") == datetime(2024, 5, 2, 3, tzinfo=UTC)
    assert h.d.schedule.pending("skipped") == datetime(2024, 5, 2, 3, tzinfo=UTC)


def test_runner_reload_adds_jobs_and_keeps_the_old_config_when_invalid(tmp_path: Path) -> None:
    h = Harness(tmp_path, '  one: {type: gc, cron: "0 3 * * *", store: a}\n')
    h.path.write_text(BASE + '  one: {type: gc, cron: "0 3 * * *", store: nope}\n')
    h.d.request_reload()
    h.d.step()
    assert h.names("config-invalid") == [""]
    assert "casbackup.yaml:8: jobs.one.store: unknown store 'nope'" in h.events[-1][1]["error"]
    assert list(h.d.config.jobs) == ["one"]
    h.path.write_text(BASE + '  two: {type: gc, cron: "* * * * * */5", store: b}\n')
    h.d.request_reload()
    h.d.step()
    assert list(h.d.config.jobs) == ["two"] and "one" not in h.d.state.jobs
    h.advance(4)
    assert FakeProc.started == ["two"]
    h.finish("two")
    assert h.d.health().ok


def test_runner_stop_stops_running_jobs_and_keeps_their_slot_missed(tmp_path: Path) -> None:
    h = Harness(tmp_path, '  slow: {type: gc, cron: "* * * * * */10", store: a}\n')
    h.advance(9)
    assert FakeProc.started == ["slow"]
    h.d.request_stop()
    h.d._shutdown()  # stop_timeout=0: stop it at once
    assert h.names("job-stopped") == ["slow"]
    assert [e for e, _ in h.events][-3:] == ["daemon-stopping", "job-stopped", "daemon-stop"]
    st = load_state(tmp_path / "state.json")
    assert st.jobs.get("slow", JobState()).last_run is None  # its slot stays missed
    assert st.daemon_stopped is not None


def test_runner_health_counts_from_start_and_from_success(tmp_path: Path) -> None:
    h = Harness(tmp_path, '  j: {type: gc, cron: "* * * * * */10", store: a}\n')
    assert h.d.health().ok
    h.clock.advance(9 + 5.5)  # slot 12:00:10, half an interval later: overdue
    rep = h.d.health()
    assert [o["job"] for o in rep.overdue] == ["j"]
    h.d.step()
    h.finish("j")
    assert h.d.health().ok


@pytest.mark.parametrize("text", ["[]", "stores: {}"])
def test_runner_refuses_an_invalid_config_at_start(tmp_path: Path, text: str) -> None:
    from casbackup.errors import UsageError

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(UsageError):
        Daemon(tmp_path / "c.yaml", lambda e, **f: None)


def test_runner_waker_never_blocks_and_wakes_at_once() -> None:
    from casbackup.daemon.queue import Waker

    w = Waker()
    for _ in range(100_000):  # far more than a pipe holds: set() must not block
        w.set()
    t0 = time.monotonic()
    w.wait(5)
    w.wait(0.05)  # drained: this one sleeps its timeout
    assert 0.04 < time.monotonic() - t0 < 1
    threading.Timer(0.05, w.set).start()
    t0 = time.monotonic()
    w.wait(5)
    assert time.monotonic() - t0 < 1
    w.close()


def test_runner_reload_when_a_job_is_due_keeps_that_run(tmp_path: Path) -> None:
    h = Harness(tmp_path, '  j: {type: gc, cron: "* * * * * */10", store: a}\n')
    h.d.step()
    h.clock.advance(9.5)  # 12:00:10.5: due, and a SIGHUP arrives before the loop wakes
    h.d.request_reload()
    h.d.step()
    assert FakeProc.started == ["j"]
    assert h.names("config-reload") == [""]


def test_a_job_end_event_comes_after_the_state_it_reports(tmp_path: Path) -> None:
    # whoever acts on "job-failure"/"job-success" (a log follower, then GET /healthz)
    # must find the run in the health report and the state: the event is emitted after
    # the state is updated (the daemon process test saw /healthz 200 right after the
    # failure event, once, on a loaded CI machine)
    h = Harness(tmp_path, """\
  bad: {type: gc, cron: "0 * * * *", store: a}
  good: {type: gc, cron: "0 * * * *", store: b}
""")
    FakeProc.results["bad"] = ["failure"]
    seen: list[tuple[str, str | None, bool]] = []

    def emit(event: str, **f: Any) -> None:
        h.events.append((event, f))
        if event in ("job-failure", "job-success"):
            js = h.d.state.jobs[f["job"]]
            failing = [x["job"] for x in h.d.health().failing]
            seen.append((f["job"], js.last_result, f["job"] in failing))

    h.d.emit = emit  # type: ignore[method-assign]
    h.advance(3600)
    h.finish("bad")
    h.finish("good")
    assert sorted(seen) == [("bad", "failure", True), ("good", "success", False)]
