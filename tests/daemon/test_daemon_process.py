"""The daemon as a real process (``python -m casbackup daemon``) on local stores in tmp
dirs (and one S3 store on moto), with jobs every few seconds (6-field cron, seconds last):
scheduled backups, syncs and retention happen; /metrics and /healthz answer over HTTP;
SIGHUP reloads (a new job runs, an invalid file is refused); SIGTERM exits 0 leaving no
lock; missed runs are caught up after downtime; watches snapshot and replicate."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from casbackup.ops.sync import paired_key
from casbackup.store import init_store, open_store
from tests.conftest import free_port
from tests.helpers import FAST_KDF, PASSWORD, cli_env, make_store, open_test_store, run_cli

Event = dict[str, Any]


class DaemonProcess:
    """A running daemon whose JSON event lines are collected as they come."""

    def __init__(self, config: Path, *args: str) -> None:
        env = cli_env()
        env.pop("CASBACKUP_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "casbackup", "daemon", "--config", str(config), "--json",
             *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)  # fmt: skip
        self.events: list[Event] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = line.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.raw.append(text)
                with contextlib.suppress(json.JSONDecodeError):
                    self.events.append(json.loads(text))
                self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[Event]], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.events):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    log = "\n".join(self.raw[-40:])
                    raise AssertionError(f"condition not met in {timeout}s; log:\n{log}")
                self._cond.wait(min(left, 0.2))

    def of(self, event: str, job: str | None = None) -> list[Event]:
        with self._cond:
            return [e for e in self.events
                    if e["event"] == event and (job is None or e["job"] == job)]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def count(event: str, job: str, n: int = 1) -> Callable[[list[Event]], bool]:
    return lambda evs: sum(e["event"] == event and e["job"] == job for e in evs) >= n


def http(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def locks(store: Path) -> list[str]:
    d = store / "locks"
    return sorted(p.name for p in d.rglob("*") if p.is_file()) if d.exists() else []


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.txt").write_bytes(os.urandom(2000) * (i + 1))
    with make_store(tmp_path / "local") as local:
        master, chunker = paired_key(local)
    init_store(str(tmp_path / "remote"), PASSWORD, master=master, chunker=chunker,
               kdf_n=FAST_KDF).close()
    yield tmp_path, free_port()


CONFIG = """\
stores:
  local: {{url: local, password: {{env: CASBACKUP_PASSWORD}}}}
  remote: {{url: remote, password: {{env: CASBACKUP_PASSWORD}}}}
sources:
  src: {{paths: [src]}}
  gone: {{paths: [no-such-dir]}}
jobs:
  backup: {{type: backup, cron: "* * * * * */2", store: local, source: src, tags: [auto]}}
  sync: {{type: sync, cron: "* * * * * */3", store: local, to: remote}}
  forget: {{type: forget, cron: "* * * * * */4", store: local, policy: {{keep_last: 2}},
            prune: true}}
{extra}metrics: {{listen: "127.0.0.1:{port}", health_slack: 3}}
state: state.json
"""

EXTRA = """\
  check: {type: verify, cron: "* * * * * */2", store: local, read_data_subset: "50%"}
  broken: {type: backup, cron: "* * * * * */2", store: local, source: gone, retries: 1,
           retry_delay: 0.5}
"""


def test_daemon_runs_jobs_serves_metrics_reloads_and_stops(setup: tuple[Path, int]) -> None:
    tmp, port = setup
    cfg = tmp / "casbackup.yaml"
    cfg.write_text(CONFIG.format(extra="", port=port))
    d = DaemonProcess(cfg)
    try:
        d.wait_for(count("metrics-listen", None))  # type: ignore[arg-type]
        d.wait_for(lambda evs: count("job-success", "backup", 3)(evs)
                   and count("job-success", "sync")(evs)
                   and any(e["event"] == "job-success" and e["job"] == "forget"
                           for e in evs))  # fmt: skip
        # backups happened as scheduled: at their slots (even seconds), one run per slot
        starts = [datetime.fromisoformat(e["scheduled"]) for e in d.of("job-start", "backup")]
        assert all(t.second % 2 == 0 and t.microsecond == 0 for t in starts)
        assert starts == sorted(set(starts))
        backups = [e["snapshot"] for e in d.of("job-success", "backup")]

        # /metrics and /healthz over HTTP
        base = f"http://127.0.0.1:{port}"
        code, body = http(base + "/metrics")
        text = body.decode()
        assert code == 200
        assert ('casbackup_job_last_success_timestamp_seconds{job_name="backup",store="local"}'
                in text)
        assert 'casbackup_store_snapshots{store="remote"}' in text
        assert 'casbackup_job_failures_total{job_name="sync",store="local"} 0.0' in text
        code, body = http(base + "/healthz")
        assert code == 200 and json.loads(body)["status"] == "ok"

        # SIGHUP with an invalid file: refused, the old configuration keeps running
        cfg.write_text(CONFIG.format(extra="  bad: {type: nope}\n", port=port))
        n = len(d.of("job-success", "backup"))
        d.signal(signal.SIGHUP)
        d.wait_for(count("config-invalid", None))  # type: ignore[arg-type]
        assert "casbackup.yaml:12: jobs.bad" in d.of("config-invalid")[0]["error"]
        d.wait_for(count("job-success", "backup", n + 1))

        # SIGHUP with two new jobs: both run; the broken one is retried, then /healthz is 503
        cfg.write_text(CONFIG.format(extra=EXTRA, port=port))
        d.signal(signal.SIGHUP)
        d.wait_for(count("config-reload", None))  # type: ignore[arg-type]
        assert sorted(d.of("config-reload")[0]["added"]) == ["broken", "check"]
        d.wait_for(lambda evs: count("job-success", "check")(evs)
                   and count("job-failure", "broken")(evs))  # fmt: skip
        assert len(d.of("job-retry", "broken")) >= 1
        assert "does not exist" in d.of("job-failure", "broken")[0]["error"]
        code, body = http(base + "/healthz")
        health = json.loads(body)
        assert code == 503 and [f["job"] for f in health["failing"]] == ["broken"]

        assert d.stop() == 0
    finally:
        d.kill()
    assert d.events[-1]["event"] == "daemon-stop"
    assert all({"ts", "event", "job", "store"} <= set(e) for e in d.events)

    # the stores: backups with their tags, retention applied, snapshots synced, no locks
    with open_test_store(tmp / "local") as st:
        local = {s.id: s for s in st.snapshots()}
    with open_test_store(tmp / "remote") as st:
        remote = st.snapshots()
    forgotten = {i for e in d.of("job-success", "forget") for i in e.get("removed", [])}
    assert all(s.tags == ["auto"] for s in local.values())
    assert len(local) < len(d.of("job-success", "backup"))
    assert not forgotten & set(local)
    assert {s.original for s in remote} & set(backups)
    assert locks(tmp / "local") == [] and locks(tmp / "remote") == []
    state = json.loads((tmp / "state.json").read_text())
    assert state["jobs"]["backup"]["last_result"] == "success"
    assert state["jobs"]["broken"]["last_result"] == "failure"
    assert state["daemon"]["stopped"] is not None


def test_daemon_catches_up_a_missed_run_after_downtime(setup: tuple[Path, int]) -> None:
    tmp, port = setup
    cfg = tmp / "casbackup.yaml"
    cfg.write_text("""\
stores:
  local: {url: local, password: {env: CASBACKUP_PASSWORD}}
sources:
  src: {paths: [src]}
jobs:
  nightly: {type: backup, cron: "0 3 * * *", store: local, source: src, catch_up: true}
  weekly: {type: backup, cron: "0 4 * * 0", store: local, source: src}
state: state.json
""")
    long_ago = (datetime.now(UTC) - timedelta(days=9)).isoformat()
    (tmp / "state.json").write_text(json.dumps({"version": 1, "jobs": {
        "nightly": {"last_run": long_ago}, "weekly": {"last_run": long_ago}}}))
    d = DaemonProcess(cfg)
    try:
        d.wait_for(count("job-success", "nightly"))
        assert d.of("job-start", "nightly")[0]["catch_up"] is True
        second = run_cli("daemon", "--config", str(cfg), timeout=30)  # same state file
        assert second.returncode == 2
        assert f"another daemon (pid {d.proc.pid}) already uses" in second.stderr.decode()
        assert d.stop() == 0
    finally:
        d.kill()
    assert d.of("job-start", "weekly") == []  # without catch_up a missed run is skipped
    assert len(d.of("job-success", "nightly")) == 1  # once, not once per missed night
    with open_test_store(tmp / "local") as st:
        assert len(st.snapshots()) == 1


def test_daemon_sigterm_during_a_backup_stops_it_cleanly(setup: tuple[Path, int]) -> None:
    tmp, port = setup
    with open(tmp / "src" / "big.bin", "wb") as f:  # sparse: slow to read, no disk used
        f.truncate(1 << 30)
    cfg = tmp / "casbackup.yaml"
    cfg.write_text("""\
stores:
  local: {url: local, password: {env: CASBACKUP_PASSWORD}}
sources:
  src: {paths: [src]}
jobs:
  big: {type: backup, cron: "* * * * * *", store: local, source: src, backup_type: full}
state: state.json
""")
    d = DaemonProcess(cfg, "--stop-timeout", "0")
    try:
        d.wait_for(count("job-start", "big"))
        time.sleep(0.1)
        assert d.stop() == 0
    finally:
        d.kill()
    assert d.of("job-success", "big") == []
    assert [e["event"] for e in d.events][-3:] == ["daemon-stopping", "job-stopped",
                                                   "daemon-stop"]
    assert locks(tmp / "local") == []
    with open_test_store(tmp / "local") as st:
        assert st.snapshots() == []  # abandoned before its commit point
    state = json.loads((tmp / "state.json").read_text())
    assert state["jobs"]["big"]["last_run"] is None  # the slot still counts as missed


def test_daemon_watch_snapshots_changes_and_replicates(setup: tuple[Path, int]) -> None:
    tmp, port = setup
    cfg = tmp / "casbackup.yaml"
    cfg.write_text(f"""\
stores:
  local: {{url: local, password: {{env: CASBACKUP_PASSWORD}}}}
  remote: {{url: remote, password: {{env: CASBACKUP_PASSWORD}}}}
sources:
  src: {{paths: [src]}}
watches:
  - {{source: src, store: local, debounce: 0.2, max_delay: 1, sync_to: [remote]}}
metrics: {{listen: "127.0.0.1:{port}"}}
state: state.json
""")
    d = DaemonProcess(cfg)
    try:
        d.wait_for(lambda evs: any(e["event"] == "watch-ready" for e in evs))
        (tmp / "src" / "new.txt").write_text("a change")
        d.wait_for(lambda evs: any(e["event"] == "watch-snapshot" and e["reason"] != "initial"
                                   and e.get("latency") is not None for e in evs))
        change = [e for e in d.of("watch-snapshot") if e["reason"] != "initial"][0]
        d.wait_for(lambda evs: any(e["event"] == "watch-sync"
                                   and e["snapshot"] == change["snapshot"] for e in evs))
        code, body = http(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert 'casbackup_watch_latency_seconds_count{source="src",store="local"} 1.0' in (
            body.decode())
        code, body = http(f"http://127.0.0.1:{port}/healthz")
        assert code == 200
        assert d.stop() == 0
    finally:
        d.kill()
    with open_test_store(tmp / "remote") as st:
        assert change["snapshot"] in {s.original for s in st.snapshots()}
    state = json.loads((tmp / "state.json").read_text())
    assert state["watches"]["src->local"]["snapshots"] >= 2
    assert locks(tmp / "local") == [] and locks(tmp / "remote") == []


def test_daemon_syncs_to_an_s3_store(setup: tuple[Path, int], s3_url: str) -> None:
    tmp, port = setup
    with open_test_store(tmp / "local") as local:
        master, chunker = paired_key(local)
    init_store(s3_url, PASSWORD, master=master, chunker=chunker, kdf_n=FAST_KDF).close()
    cfg = tmp / "casbackup.yaml"
    cfg.write_text(f"""\
stores:
  local: {{url: local, password: {{env: CASBACKUP_PASSWORD}}}}
  s3: {{url: "{s3_url}", password: {{env: CASBACKUP_PASSWORD}}}}
sources:
  src: {{paths: [src]}}
jobs:
  backup: {{type: backup, cron: "* * * * * */2", store: local, source: src}}
  offsite: {{type: sync, cron: "* * * * * */2", store: local, to: s3}}
  check: {{type: verify, cron: "* * * * * */2", store: s3, read_data_subset: "100%"}}
state: state.json
""")
    d = DaemonProcess(cfg)
    try:
        d.wait_for(lambda evs: any(e["event"] == "job-success" and e["job"] == "offsite"
                                   and e["bytes_added"] > 0 for e in evs))
        d.wait_for(lambda evs: sum(e["event"] == "job-success" and e["job"] == "check"
                                   for e in evs) >= 1)
        assert d.stop() == 0
    finally:
        d.kill()
    assert d.of("job-failure") == []
    with open_test_store(tmp / "local") as st:
        local = {s.id for s in st.snapshots()}
    with open_store(s3_url, lambda: PASSWORD) as st:
        assert {s.original for s in st.snapshots()} & local
