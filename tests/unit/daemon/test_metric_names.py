"""Every series casbackup exposes follows Prometheus' naming rules, checked on the real
exposition (parsed by prometheus_client's own parser): base units with the unit suffix
last, counters ending in ``_total``, no ``_created`` series, no ``job``/``instance`` label
(Prometheus renames them to ``exported_*``), and textfiles of different runs against one
store never holding the same series (node_exporter refuses duplicates)."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from casbackup.daemon.jobs import JobOutcome
from casbackup.daemon.metrics import Metrics, write_textfile
from casbackup.ops.status import StoreStatus

# words that name a unit and so must be the last word of a name (before _total), and the
# non-base units that must not appear at all
UNITS = ("seconds", "bytes", "ratio", "timestamp_seconds")
NOT_BASE = ("milliseconds", "ms", "minutes", "hours", "kilobytes", "megabytes", "mib", "kib")
NAME = re.compile(r"^casbackup_[a-z][a-z0-9_]*$")


def _full_metrics() -> Metrics:
    m = Metrics()
    m.declare_job("nightly", "local")
    m.job_next_run("nightly", "local", 2000.0)
    m.job(JobOutcome("nightly", "backup", "local", duration=2.0, bytes_read=5, bytes_added=1,
                     files=3, retries=2), 1000.0)
    m.store("local", StoreStatus("/s", reachable=True, size_bytes=5, snapshots=1,
                                 logical_bytes=9, last_snapshot_time=1.0))
    m.watch("src", "local", 0.7)
    return m


def check_conventions(text: str) -> list[str]:
    """The rule violations in an exposition, one line each (empty: all good)."""
    problems = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for fam in text_string_to_metric_families(text):
        if not NAME.match(fam.name):
            problems.append(f"{fam.name}: not casbackup_snake_case")
        words = fam.name.split("_")
        for unit in NOT_BASE:
            if unit in words:
                problems.append(f"{fam.name}: {unit} is not a base unit")
        for unit in ("seconds", "bytes"):
            if unit in words and not (fam.name.endswith("_" + unit)
                                      or fam.name.endswith(f"_{unit}_total")):
                problems.append(f"{fam.name}: the unit {unit} must be the last word")
        for s in fam.samples:
            if s.name.endswith("_created"):
                problems.append(f"{s.name}: _created series")
            for label in s.labels:
                if label in ("job", "instance"):
                    problems.append(f"{s.name}: label {label!r} belongs to Prometheus")
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen:
                problems.append(f"{s.name}{dict(key[1])}: duplicate series")
            seen.add(key)
    # the parser renames a counter's samples to *_total: check the raw lines for that rule
    counters = set(re.findall(r"^# TYPE (\S+) counter$", text, re.M))
    for line in text.splitlines():
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if not line.startswith("#") and name in counters and not name.endswith("_total"):
            problems.append(f"{name}: a counter sample must end in _total")
    return problems


def test_daemon_exposition_follows_the_conventions() -> None:
    text = _full_metrics().render().decode()
    assert check_conventions(text) == []
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"casbackup_build_info", "casbackup_job_next_run_timestamp_seconds",
            "casbackup_job_backend_retries", "casbackup_job_last_read_bytes",
            "casbackup_job_last_added_bytes"} <= names


def test_the_checker_catches_each_violation() -> None:
    """The convention check is not vacuous: each rule fires on a hand-written bad line."""
    bad = {
        "# TYPE casbackup_job_x counter\ncasbackup_job_x 1\n": "must end in _total",
        "# TYPE casbackup_x_total counter\ncasbackup_x_total 1\ncasbackup_x_created 5\n":
            "_created",
        'casbackup_y{job="a"} 1\n': "belongs to Prometheus",
        "casbackup_last_bytes_read 1\n": "must be the last word",
        "casbackup_age_minutes 1\n": "not a base unit",
        'casbackup_z{a="1"} 1\ncasbackup_z{a="1"} 2\n': "duplicate series",
    }
    for text, reason in bad.items():
        problems = check_conventions(text)
        assert any(reason in p for p in problems), (text, problems)


def test_build_info_and_retries_and_next_run() -> None:
    s = {(x.name, tuple(sorted(x.labels.items()))): x.value
         for f in text_string_to_metric_families(_full_metrics().render().decode())
         for x in f.samples}
    job = (("job_name", "nightly"), ("store", "local"))
    assert s[("casbackup_job_backend_retries_total", job)] == 2
    assert s[("casbackup_job_next_run_timestamp_seconds", job)] == 2000.0
    [(name, labels)] = [k for k in s if k[0] == "casbackup_build_info"]
    assert dict(labels)["version"] and dict(labels)["python"]


def test_two_textfiles_for_one_store_hold_no_common_series(tmp_path: Path) -> None:
    """node_exporter merges every textfile of its directory: two one-shot commands against
    one store (``--metrics-job etc`` and ``--metrics-job home``) must not both export
    ``casbackup_store_size_bytes{store=...}``."""
    st = {"/srv/s": StoreStatus("/srv/s", True, size_bytes=10, snapshots=2)}
    for job in ("etc", "home"):
        write_textfile(str(tmp_path / f"{job}.prom"), JobOutcome(job, "backup", "/srv/s"),
                       100.0, st)
    merged = (tmp_path / "etc.prom").read_text() + (tmp_path / "home.prom").read_text()
    # the parser refuses a family repeated across files; check series by sample instead
    problems = [p for text in (merged,) for p in _duplicate_samples(text)]
    assert problems == []
    assert 'casbackup_store_size_bytes{job_name="etc",store="/srv/s"} 10.0' in merged


def _duplicate_samples(text: str) -> list[str]:
    seen: set[str] = set()
    dup = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series = line.rsplit(" ", 1)[0]
        if series in seen:
            dup.append(series)
        seen.add(series)
    return dup


def test_grafana_dashboard_queries_only_series_that_exist() -> None:
    """contrib/grafana-casbackup.json: valid JSON, and every metric name in its queries is
    one casbackup exposes (a renamed series must not leave an empty panel behind)."""
    import json

    dash = json.loads((Path(__file__).parents[3] / "contrib" / "grafana-casbackup.json")
                      .read_text())
    exposed = set()
    for fam in text_string_to_metric_families(_full_metrics().render().decode()):
        exposed |= {s.name for s in fam.samples} | {fam.name}
    queries = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    queries += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    used = {n for q in queries for n in re.findall(r"\bcasbackup_[a-z0-9_]+", q)}
    assert len(dash["panels"]) >= 10 and used
    assert used - exposed == set()
