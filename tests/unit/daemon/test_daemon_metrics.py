"""Metrics (casbackup.daemon.metrics): series, textfiles with carried-over counters, and
the /metrics + /healthz HTTP server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from casbackup.daemon.health import HealthReport
from casbackup.daemon.jobs import JobOutcome
from casbackup.daemon.metrics import Metrics, MetricsServer, store_label, write_textfile
from casbackup.ops.status import StoreStatus


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


JOB = (("job_name", "nightly"), ("store", "local"))


def test_metrics_job_and_store_series() -> None:
    m = Metrics()
    m.job(JobOutcome("nightly", "backup", "local", duration=2.5, bytes_read=100,
                     bytes_added=40, files=7), finished=1000.0)
    m.job(JobOutcome("nightly", "backup", "local", "failure", error="boom"), finished=2000.0)
    m.store("local", StoreStatus("/s", reachable=True, size_bytes=50, snapshots=3,
                                 logical_bytes=200, last_snapshot_time=999.0))
    m.watch("docs", "local", 1.5)
    s = samples(m.render().decode())
    assert s[("casbackup_job_runs_total", JOB)] == 2
    assert s[("casbackup_job_failures_total", JOB)] == 1
    assert s[("casbackup_job_last_success_timestamp_seconds", JOB)] == 1000.0
    assert s[("casbackup_job_last_run_success", JOB)] == 0
    assert s[("casbackup_job_last_duration_seconds", JOB)] == 0.0  # the last attempt's
    store = (("store", "local"),)
    assert s[("casbackup_store_size_bytes", store)] == 50
    assert s[("casbackup_store_snapshots", store)] == 3
    assert s[("casbackup_store_dedup_ratio", store)] == 4.0
    assert s[("casbackup_store_last_snapshot_timestamp_seconds", store)] == 999.0
    watch = (("source", "docs"), ("store", "local"))
    assert s[("casbackup_watch_latency_seconds_count", watch)] == 1
    m.remove_job("nightly", "local")
    assert ("casbackup_job_runs_total", JOB) not in samples(m.render().decode())


def test_metrics_declared_job_has_zero_series_before_its_first_run() -> None:
    m = Metrics()
    m.declare_job("nightly", "local")
    s = samples(m.render().decode())
    assert s[("casbackup_job_runs_total", JOB)] == 0
    assert s[("casbackup_job_failures_total", JOB)] == 0
    assert s[("casbackup_job_running", JOB)] == 0


def test_metrics_registries_are_private() -> None:
    a, b = Metrics(), Metrics()
    a.job(JobOutcome("x", "gc", "s"), 1.0)
    assert b"casbackup_job_runs_total{" not in b.render()


def test_textfile_carries_counters_and_last_success_over(tmp_path: Path) -> None:
    path = str(tmp_path / "backup.prom")
    ok = JobOutcome("nightly", "backup", "local", bytes_added=5)
    write_textfile(path, ok, 100.0, {"local": StoreStatus("/s", True, size_bytes=9)})
    write_textfile(path, JobOutcome("nightly", "backup", "local", "failure"), 200.0)
    s = samples(Path(path).read_text())
    assert s[("casbackup_job_runs_total", JOB)] == 2
    assert s[("casbackup_job_failures_total", JOB)] == 1
    assert s[("casbackup_job_last_success_timestamp_seconds", JOB)] == 100.0
    assert s[("casbackup_job_last_run_timestamp_seconds", JOB)] == 200.0
    assert [p.name for p in tmp_path.iterdir()] == ["backup.prom"]
    Path(path).write_text("garbage {{{\n")
    write_textfile(path, ok, 300.0)  # an unreadable old file: start over
    assert samples(Path(path).read_text())[("casbackup_job_runs_total", JOB)] == 1


def test_store_label_hides_credentials() -> None:
    assert store_label("s3://bucket/p?endpoint=http%3A%2F%2Fx&secret=1") == "s3://bucket/p"
    assert store_label("sftp://me:pw@host:2222/srv?key=/k") == "sftp://me@host:2222/srv"
    assert store_label("/srv/store") == "/srv/store"


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.mark.parametrize("healthy", [True, False])
def test_metrics_server_serves_metrics_and_healthz(healthy: bool) -> None:
    m = Metrics()
    m.job(JobOutcome("nightly", "backup", "local"), 1.0)
    report = HealthReport(healthy, [] if healthy else [{"job": "nightly", "reason": "x"}])
    server = MetricsServer("127.0.0.1", 0, m, lambda: report)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        code, ctype, body = get(base + "/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        assert b'casbackup_job_runs_total{job_name="nightly",store="local"} 1.0' in body
        code, ctype, body = get(base + "/healthz")
        assert (code, ctype) == ((200 if healthy else 503), "application/json")
        assert json.loads(body)["status"] == ("ok" if healthy else "unhealthy")
        assert get(base + "/other")[0] == 404
    finally:
        server.stop()
