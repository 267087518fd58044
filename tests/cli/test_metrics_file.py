"""``--metrics-file``/``--metrics-job`` on every one-shot command, through the real CLI on
real stores: each writes its job's series (a verify that finds damage as a failure, exit
13 kept), ``--metrics-job`` keeps two runs against one store in separate series, and the
textfiles of one directory hold no duplicate series (what node_exporter requires)."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import make_store, run_cli


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(path.read_text()) for s in f.samples}


def test_every_one_shot_command_writes_its_series(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_store(store).close()
    make_store(tmp_path / "other").close()
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(100_000))
    prom = tmp_path / "prom"
    prom.mkdir()
    s = str(store)
    runs = {
        "etc": ["backup", "--store", s, str(src)],
        "home": ["backup", "--store", s, str(src)],
        "verify": ["verify", "--store", s, "--read-data"],
        "gc": ["gc", "--store", s],
        "forget": ["forget", "--store", s, "--keep-last", "1"],
        "restore": ["restore", "--store", s, "latest", str(tmp_path / "out")],
        "repair": ["repair", "--store", s],
    }
    for job, args in runs.items():
        r = run_cli(*args, "--metrics-file", str(prom / f"{job}.prom"), "--metrics-job", job)
        assert r.returncode == 0, (job, r.stderr)
    r = run_cli("sync", s, str(tmp_path / "other"), "--metrics-file", str(prom / "sync.prom"))
    assert r.returncode in (0, 2), r.stderr  # unpaired stores are refused: still recorded
    for job in runs:
        got = _samples(prom / f"{job}.prom")
        lbl = (("job_name", job), ("store", s))
        assert got[("casbackup_job_runs_total", lbl)] == 1, job
        assert got[("casbackup_job_last_run_success", lbl)] == 1, job
    assert _samples(prom / "sync.prom")[("casbackup_job_runs_total", (
        ("job_name", "sync"), ("store", str(tmp_path / "other"))))] == 1
    # node_exporter reads the whole directory: no series may appear twice
    seen: set[str] = set()
    for f in prom.iterdir():
        for line in f.read_text().splitlines():
            if line and not line.startswith("#"):
                series = line.rsplit(" ", 1)[0]
                assert series not in seen, series
                seen.add(series)


def test_verify_finding_damage_is_a_failure_in_the_textfile(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_store(store).close()
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(300_000))
    assert run_cli("backup", "--store", str(store), str(src)).returncode == 0
    pack = next(p for p in (store / "packs").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF
    pack.write_bytes(bytes(data))
    prom = tmp_path / "v.prom"
    r = run_cli("verify", "--store", str(store), "--read-data", "--metrics-file", str(prom))
    assert r.returncode == 13
    got = _samples(prom)
    lbl = (("job_name", "verify"), ("store", str(store)))
    assert got[("casbackup_job_failures_total", lbl)] == 1
    assert got[("casbackup_job_last_run_success", lbl)] == 0
