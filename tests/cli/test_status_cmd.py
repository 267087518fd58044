"""``casbackup status``, ``casbackup test`` (self-test or verify) and ``backup
--metrics-file``, run as real CLI processes against local stores."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from casbackup.daemon.state import JobState, State, save_state
from casbackup.store.locks import shared_lock
from tests.helpers import cli_env, json_result, make_store, open_test_store, run_cli

CONFIG = """\
stores:
  local: {{url: local, password: {{env: CASBACKUP_PASSWORD}}}}
{extra}sources:
  src: {{paths: [src]}}
jobs:
  nightly: {{type: backup, cron: "0 3 * * *", store: local, source: src}}
  weekly: {{type: verify, cron: "0 4 * * 0", store: local}}
state: state.json
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"x" * 10000)
    make_store(tmp_path / "local").close()
    r = run_cli("backup", "--store", str(tmp_path / "local"), str(tmp_path / "src"))
    assert r.returncode == 0, r.stderr
    (tmp_path / "casbackup.yaml").write_text(CONFIG.format(extra=""))
    return tmp_path


def test_status_of_one_store_with_a_lock(site: Path) -> None:
    with open_test_store(site / "local") as st, shared_lock(st, "backup"):
        r = run_cli("status", "--store", str(site / "local"), "--json")
    assert r.returncode == 0, r.stderr
    (name, s), = json_result(r.stdout, "status_report")["stores"].items()
    assert name == str(site / "local") and s["reachable"]
    assert s["snapshots"] == 1 and s["size_bytes"] > 0 and s["logical_bytes"] == 10000
    assert 0 <= s["last_snapshot_age_seconds"] < 120
    assert datetime.fromisoformat(s["last_snapshot_time"]).tzinfo is not None
    (lock,) = s["locks"]
    assert lock["operation"] == "backup" and not lock["exclusive"] and not lock["stale"]
    r = run_cli("status", "--store", str(site / "local"))
    assert "reachable" in r.stdout.decode() and "1 snapshots" in r.stdout.decode()


def test_status_from_config_and_state_file(site: Path) -> None:
    now = datetime.now(UTC)
    state = State(daemon_pid=os.getpid(), daemon_started=now - timedelta(hours=1))
    state.jobs["nightly"] = JobState(last_run=now - timedelta(hours=5), last_result="failure",
                                     last_error="store is locked", next_run=now + timedelta(1))
    save_state(site / "state.json", state)
    r = run_cli("status", "--config", str(site / "casbackup.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json_result(r.stdout, "status_report")
    assert rep["stores"]["local"]["reachable"] and rep["stores"]["local"]["snapshots"] == 1
    jobs = {j["name"]: j for j in rep["jobs"]}
    assert jobs["nightly"]["last_result"] == "failure"
    assert jobs["nightly"]["last_error"] == "store is locked"
    assert jobs["weekly"]["last_run"] is None and jobs["weekly"]["next_run"]
    assert rep["daemon"]["pid"] == os.getpid() and rep["daemon"]["running"] is True
    text = run_cli("status", "--config", str(site / "casbackup.yaml")).stdout.decode()
    assert "nightly: backup on local, last failure 5.0h ago (store is locked)" in text
    assert "weekly: verify on local, never run, next" in text
    assert f"daemon: running (pid {os.getpid()})" in text


def test_status_reports_every_store_then_fails_for_an_unreachable_one(site: Path) -> None:
    cfg = site / "casbackup.yaml"
    cfg.write_text(CONFIG.format(extra="  gone: {url: nowhere}\n"))
    r = run_cli("status", "--config", str(cfg))
    assert r.returncode == 10
    out = r.stdout.decode()
    assert "local: reachable" in out and "gone: UNREACHABLE: no casbackup store" in out
    assert "1 of 2 store(s) unreachable: gone" in r.stderr.decode()


def test_test_with_config_checks_config_stores_and_data(site: Path) -> None:
    cfg = site / "casbackup.yaml"
    r = run_cli("test", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "valid (1 stores, 2 jobs)" in out and "reachable; 1 snapshots" in out
    assert out.strip().endswith("self-test passed")
    r = run_cli("test", "--config", str(cfg), "--json")
    assert json_result(r.stdout)["stores"]["local"]["packs_read"] >= 1
    # damaged data: the quick verify reads at least one pack, so with one pack it is found
    for p in (site / "local" / "packs").rglob("*"):
        if p.is_file():
            p.write_bytes(p.read_bytes()[:-1] + b"\0")
    r = run_cli("test", "--config", str(cfg), "--read-data-subset", "100%")
    assert r.returncode == 13
    assert "self-test failed for 1 of 1 store(s): local" in r.stderr.decode()


def test_test_exit_codes_for_bad_config_and_unreachable_store(site: Path) -> None:
    cfg = site / "casbackup.yaml"
    cfg.write_text(CONFIG.format(extra="  gone: {url: nowhere}\n"))
    assert run_cli("test", "--config", str(cfg)).returncode == 10
    cfg.write_text("stores: {}\n")
    r = run_cli("test", "--config", str(cfg))
    assert r.returncode == 2 and "casbackup.yaml:1: stores: define at least one store" in (
        r.stderr.decode())


def test_test_with_store_is_verify(site: Path, tmp_path: Path) -> None:
    r = run_cli("test", "--store", str(site / "local"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().endswith("no problems found\n")
    r = run_cli("test", "--store", str(site / "local"), "--json", "--read-data")
    assert json_result(r.stdout)["ok"] is True
    assert run_cli("test", "--store", str(tmp_path / "none")).returncode == 10
    env = cli_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    env.pop("CASBACKUP_CONFIG", None)
    r = run_cli("test", env=env)  # no config found, no store
    assert r.returncode == 2 and "nothing to test" in r.stderr.decode()


def test_backup_metrics_file(site: Path) -> None:
    prom = site / "backup.prom"
    store = str(site / "local")
    r = run_cli("backup", "--store", store, str(site / "src"), "--metrics-file", str(prom))
    assert r.returncode == 0, r.stderr
    r = run_cli("backup", "--store", store, str(site / "missing"), "--metrics-file", str(prom))
    assert r.returncode == 2
    s = {(x.name, tuple(sorted(x.labels.items()))): x.value
         for f in text_string_to_metric_families(prom.read_text()) for x in f.samples}
    job = (("job_name", "backup"), ("store", store))
    assert s[("casbackup_job_runs_total", job)] == 2
    assert s[("casbackup_job_failures_total", job)] == 1
    assert s[("casbackup_job_last_run_success", job)] == 0
    assert s[("casbackup_job_last_success_timestamp_seconds", job)] > 0
    assert s[("casbackup_store_snapshots", job)] == 2
