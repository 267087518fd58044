"""One run of each job type (casbackup.daemon.jobs.run_job) against real local stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from casbackup.daemon.config import Config, load_config
from casbackup.daemon.jobs import run_job
from casbackup.ops.sync import paired_key
from casbackup.store import init_store
from tests.helpers import FAST_KDF, PASSWORD, make_store, open_test_store

CONFIG = """\
stores:
  local: {url: local, password: {env: CASBACKUP_TEST_PW}}
  remote: {url: remote, password: {env: CASBACKUP_TEST_PW}}
  missing: {url: nowhere, password: {env: CASBACKUP_TEST_PW}}
sources:
  src: {paths: [src], excludes: ["*.tmp"]}
  gone: {paths: [gone]}
jobs:
  bk: {type: backup, cron: "0 3 * * *", store: local, source: src, tags: [nightly],
       backup_type: full}
  bad: {type: backup, cron: "0 3 * * *", store: local, source: gone}
  vf: {type: verify, cron: "0 3 * * *", store: local, read_data_subset: "100%"}
  fg: {type: forget, cron: "0 3 * * *", store: local, policy: {keep_last: 1}, prune: true}
  gc: {type: gc, cron: "0 3 * * *", store: local}
  sy: {type: sync, cron: "0 3 * * *", store: local, to: remote}
  lost: {type: verify, cron: "0 3 * * *", store: missing}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CASBACKUP_TEST_PW", PASSWORD)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"a" * 5000)
    (tmp_path / "src" / "b.txt").write_bytes(b"b" * 3000)
    (tmp_path / "src" / "skip.tmp").write_bytes(b"tmp")
    with make_store(tmp_path / "local") as local:
        master, chunker = paired_key(local)
    init_store(str(tmp_path / "remote"), PASSWORD, master=master, chunker=chunker,
               kdf_n=FAST_KDF).close()
    (tmp_path / "casbackup.yaml").write_text(CONFIG)
    return load_config(tmp_path / "casbackup.yaml")


def test_job_backup_uses_source_excludes_type_and_tags(config: Config, tmp_path: Path) -> None:
    out = run_job(config, "bk")
    assert out.result == "success" and out.ok, out.error
    assert (out.files, out.bytes_read) == (2, 8000)
    assert out.bytes_added > 0 and out.snapshot
    with open_test_store(tmp_path / "local") as st:
        (snap,) = st.snapshots()
    assert snap.id == out.snapshot and snap.type == "full" and snap.tags == ["nightly"]
    local = out.stores["local"]
    assert local.reachable and local.snapshots == 1 and local.size_bytes > 0
    assert local.logical_bytes == 8000


def test_job_failure_is_an_outcome_with_the_exit_code(config: Config) -> None:
    out = run_job(config, "bad")
    assert (out.result, out.exit_code) == ("failure", 2)
    assert out.error is not None and "does not exist" in out.error
    lost = run_job(config, "lost")
    assert (lost.result, lost.exit_code) == ("failure", 10)
    assert not lost.stores["missing"].reachable


def test_job_verify_fails_on_damage(config: Config, tmp_path: Path) -> None:
    assert run_job(config, "bk").ok
    ok = run_job(config, "vf")
    assert ok.result == "success" and ok.details["packs_read"] > 0
    pack = next(p for p in (tmp_path / "local" / "packs").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[10] ^= 0xFF
    pack.write_bytes(bytes(data))
    bad = run_job(config, "vf")
    assert (bad.result, bad.exit_code) == ("failure", 13)
    assert bad.error is not None and "verify found" in bad.error
    assert any(pack.name in w for w in bad.warnings)


def test_job_forget_with_prune_and_gc(config: Config, tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / "src" / "a.txt").write_bytes(bytes([i]) * 7000)
        assert run_job(config, "bk").ok
    out = run_job(config, "fg")
    assert out.ok, out.error
    assert len(out.details["removed"]) == 2 and out.details["kept"] == 1
    assert "gc" in out.details
    assert out.stores["local"].snapshots == 1
    assert run_job(config, "gc").ok


def test_job_sync_copies_to_the_second_store(config: Config, tmp_path: Path) -> None:
    snap = run_job(config, "bk").snapshot
    out = run_job(config, "sy")
    assert out.ok, out.error
    assert out.details["copied"] == 1 and out.bytes_added > 0
    assert set(out.stores) == {"local", "remote"}
    with open_test_store(tmp_path / "remote") as st:
        (copy,) = st.snapshots()
    assert copy.original == snap
    again = run_job(config, "sy")
    assert again.ok and again.details["copied"] == 0 and again.details["present"] == 1
