"""Prometheus metrics: the daemon's ``/metrics`` and ``/healthz`` server, and node_exporter
textfiles for one-shot commands (``--metrics-file``).

Invariants:

* This is the ONLY module that imports ``prometheus_client``. Every metric lives in a
  dedicated ``CollectorRegistry`` (never the process-global one), so tests and one-shot
  commands start from nothing.
* Names and labels follow Prometheus' conventions (``tests/unit/daemon/test_metric_names.py``
  checks them): base units with the unit suffix last (``_seconds``, ``_bytes``), counters end
  in ``_total`` and have no ``_created`` series, and no label is called ``job`` or
  ``instance`` (Prometheus owns those and would rename ours to ``exported_job``). Job
  series are labelled ``job_name`` (the configured name; ``backup`` etc. for one-shot
  commands, or ``--metrics-job``) and ``store``; store series are labelled ``store`` (its
  configured name, or, for a one-shot command, its URL without credentials or query) and,
  in a textfile, ``job_name`` too, so that textfiles of different runs against one store
  never hold the same series (node_exporter rejects duplicates).
* ``casbackup_build_info`` is 1 with the version and Python as labels;
  ``casbackup_job_next_run_timestamp_seconds`` is the next cron slot of a daemon job;
  ``casbackup_job_backend_retries_total`` counts the backend retries of a job's runs.
  ``runs_total``/``failures_total`` count attempts (a retry is a run); the ``last_*``
  gauges describe the last attempt, ``last_success_timestamp_seconds`` the last success.
* A textfile is written atomically (``write_to_textfile``: temp file + rename) and carries
  the counters and the last success over from the file it replaces, so a failing run
  does not hide when the last good one was.
* The HTTP server answers ``GET /metrics``, ``GET /healthz`` (200 or 503 with a JSON
  reason), ``GET /`` (the status page, ``daemon/page.py``, when the daemon gives one) and
  nothing else (404); it logs nothing itself.
"""

from __future__ import annotations

import contextlib
import json
import platform
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import write_to_textfile as _write_to_textfile
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from .. import __version__
from ..ops.status import StoreStatus, display_url
from .health import HealthReport
from .jobs import JobOutcome

disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series: they double every counter for nothing

_JOB = ("job_name", "store")
_STORE = ("store",)
_TEXTFILE_STORE = ("job_name", "store")
_WATCH = ("source", "store")
WATCH_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, float("inf"))


class Metrics:
    def __init__(self, textfile_job: str | None = None) -> None:
        """``textfile_job``: this registry is one run's textfile; its store series and
        build info carry ``job_name`` so that textfiles of different jobs never collide."""
        r = self.registry = CollectorRegistry(auto_describe=True)
        p = "casbackup_"
        sl = self._store_labels = _STORE if textfile_job is None else _TEXTFILE_STORE
        extra = () if textfile_job is None else (textfile_job,)
        build = Gauge(
            p + "build_info", "casbackup's version and Python, always 1.",
            ("version", "python") + (("job_name",) if extra else ()), registry=r,
        )  # fmt: skip
        build.labels(__version__, platform.python_version(), *extra).set(1)
        self.runs = Counter(p + "job_runs", "Job runs (attempts) finished.", _JOB, registry=r)
        self.failures = Counter(p + "job_failures", "Job runs that failed.", _JOB, registry=r)
        self.last_success = Gauge(
            p + "job_last_success_timestamp_seconds",
            "When the job last finished successfully.", _JOB, registry=r,
        )  # fmt: skip
        self.last_run = Gauge(
            p + "job_last_run_timestamp_seconds", "When the job last finished.", _JOB, registry=r
        )
        self.last_ok = Gauge(
            p + "job_last_run_success", "1 if the last run succeeded, else 0.", _JOB, registry=r
        )
        self.duration = Gauge(
            p + "job_last_duration_seconds", "How long the last run took.", _JOB, registry=r
        )
        self.bytes_read = Gauge(
            p + "job_last_read_bytes", "Bytes the last run read.", _JOB, registry=r
        )
        self.bytes_added = Gauge(
            p + "job_last_added_bytes", "Bytes the last run added to the store.", _JOB, registry=r
        )
        self.files = Gauge(p + "job_last_files", "Files the last run processed.", _JOB, registry=r)
        self.running = Gauge(p + "job_running", "1 while the job runs.", _JOB, registry=r)
        self.next_run = Gauge(
            p + "job_next_run_timestamp_seconds", "The job's next cron slot.", _JOB, registry=r
        )
        self.retries = Counter(
            p + "job_backend_retries", "Backend requests retried during the job's runs.",
            _JOB, registry=r,
        )  # fmt: skip
        self.size = Gauge(
            p + "store_size_bytes", "Sum of the store's pack sizes.", sl, registry=r
        )
        self.snapshots = Gauge(p + "store_snapshots", "Snapshots in the store.", sl, registry=r)
        self.logical = Gauge(
            p + "store_logical_bytes", "Sum of the snapshots' source sizes.", sl, registry=r
        )
        self.dedup = Gauge(
            p + "store_dedup_ratio", "Logical bytes over stored bytes.", sl, registry=r
        )
        self.last_snapshot = Gauge(
            p + "store_last_snapshot_timestamp_seconds",
            "Time of the newest snapshot.", sl, registry=r,
        )  # fmt: skip
        self.reachable = Gauge(
            p + "store_reachable", "1 if the store could be opened.", sl, registry=r
        )
        self.watch_latency = Histogram(
            p + "watch_latency_seconds",
            "From the first change seen to the snapshot holding it.",
            _WATCH, buckets=WATCH_BUCKETS, registry=r,
        )  # fmt: skip

    def job(self, out: JobOutcome, finished: float) -> None:
        lbl = (out.job, out.store)
        self.runs.labels(*lbl).inc()
        self.last_run.labels(*lbl).set(finished)
        self.last_ok.labels(*lbl).set(1 if out.ok else 0)
        self.duration.labels(*lbl).set(out.duration)
        self.bytes_read.labels(*lbl).set(out.bytes_read)
        self.bytes_added.labels(*lbl).set(out.bytes_added)
        self.files.labels(*lbl).set(out.files)
        self.retries.labels(*lbl).inc(out.retries)
        self.failures.labels(*lbl)  # the series exists (at 0) before the first failure
        if out.ok:
            self.last_success.labels(*lbl).set(finished)
        else:
            self.failures.labels(*lbl).inc()

    def declare_job(self, job: str, store: str) -> None:
        """Create a configured job's counters (at 0) and ``running`` before it first runs,
        so that alerts see the series from the start."""
        self.runs.labels(job, store)
        self.failures.labels(job, store)
        self.retries.labels(job, store)
        self.running.labels(job, store).set(0)

    def job_next_run(self, job: str, store: str, when: float) -> None:
        self.next_run.labels(job, store).set(when)

    def job_running(self, job: str, store: str, running: bool) -> None:
        self.running.labels(job, store).set(1 if running else 0)

    def seed_success(self, job: str, store: str, when: float) -> None:
        """Restore a last success known from before a restart."""
        self.last_success.labels(job, store).set(when)

    def store(self, name: str, st: StoreStatus, job: str | None = None) -> None:
        """Store series; ``job`` is required by (and only by) a textfile's registry."""
        lbl = (name,) if self._store_labels == _STORE else (job or "", name)
        self.reachable.labels(*lbl).set(1 if st.reachable else 0)
        if not st.reachable:
            return
        self.size.labels(*lbl).set(st.size_bytes)
        self.snapshots.labels(*lbl).set(st.snapshots)
        self.logical.labels(*lbl).set(st.logical_bytes)
        self.dedup.labels(*lbl).set(st.dedup_ratio or 0.0)
        if st.last_snapshot_time is not None:
            self.last_snapshot.labels(*lbl).set(st.last_snapshot_time)

    def watch(self, source: str, store: str, latency: float) -> None:
        self.watch_latency.labels(source, store).observe(latency)

    def remove_job(self, job: str, store: str) -> None:
        for m in (self.runs, self.failures, self.last_success, self.last_run, self.last_ok,
                  self.duration, self.bytes_read, self.bytes_added, self.files, self.running,
                  self.next_run, self.retries):
            with contextlib.suppress(KeyError):
                m.remove(job, store)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


def store_label(url: str) -> str:
    """A store URL fit for a label: no password, no query (it may carry credentials)."""
    return display_url(url)


def _previous(path: str, job: str, store: str) -> dict[str, float]:
    """Counter values and the last success of ``job`` in an existing textfile."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return {}
    out: dict[str, float] = {}
    wanted = {"casbackup_job_runs_total", "casbackup_job_failures_total",
              "casbackup_job_backend_retries_total",
              "casbackup_job_last_success_timestamp_seconds"}  # fmt: skip
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in wanted and s.labels == {"job_name": job, "store": store}:
                    out[s.name] = float(s.value)
    except ValueError:
        return {}  # not a textfile we can read: start over
    return out


def write_textfile(path: str, out: JobOutcome, finished: float,
                   stores: Mapping[str, StoreStatus] | None = None) -> None:
    """Write one run's metrics to a node_exporter textfile, atomically."""
    m = Metrics(textfile_job=out.job)
    prev = _previous(path, out.job, out.store)
    lbl = (out.job, out.store)
    m.runs.labels(*lbl).inc(prev.get("casbackup_job_runs_total", 0.0))
    m.failures.labels(*lbl).inc(prev.get("casbackup_job_failures_total", 0.0))
    m.retries.labels(*lbl).inc(prev.get("casbackup_job_backend_retries_total", 0.0))
    if "casbackup_job_last_success_timestamp_seconds" in prev:
        m.seed_success(*lbl, prev["casbackup_job_last_success_timestamp_seconds"])
    m.job(out, finished)
    for name, st in (stores or {}).items():
        m.store(name, st, out.job)
    _write_to_textfile(path, m.registry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, host: str, port: int, metrics: Metrics,
                 health: Callable[[], HealthReport],
                 page: Callable[[], str] | None = None) -> None:
        handler = _handler(metrics, health, page)
        cls = _Server6 if ":" in host else _Server
        self.httpd = cls((host, port), handler)
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def _handler(metrics: Metrics, health: Callable[[], HealthReport],
             page: Callable[[], str] | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "casbackup"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render())
            elif path == "/" and page is not None:
                self._send(200, "text/html; charset=utf-8", page().encode())
            elif path == "/healthz":
                rep = health()
                body = json.dumps(rep.to_map(), sort_keys=True).encode() + b"\n"
                self._send(200 if rep.ok else 503, "application/json", body)
            else:
                self._send(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the daemon logs its own events; requests are not events

    return Handler
