"""Job attempts in child processes (casbackup.daemon.worker): outcome, timeout, stop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from casbackup.daemon.config import Config, load_config
from casbackup.daemon.worker import JobProcess
from tests.helpers import PASSWORD, make_store, open_test_store

CONFIG = """\
stores:
  local: {url: local, password: {env: CASBACKUP_TEST_PW}}
sources:
  src: {paths: [src]}
jobs:
  bk: {type: backup, cron: "0 3 * * *", store: local, source: src, backup_type: full}
  slow: {type: backup, cron: "0 3 * * *", store: local, source: src, backup_type: full,
         timeout: 0.6}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CASBACKUP_TEST_PW", PASSWORD)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(os.urandom(1 << 20))
    make_store(tmp_path / "local").close()
    (tmp_path / "casbackup.yaml").write_text(CONFIG)
    return load_config(tmp_path / "casbackup.yaml")


def test_worker_runs_a_job_in_a_child_process(config: Config, tmp_path: Path) -> None:
    p = JobProcess(config, "bk")
    p.start()
    assert p.pid is not None and p.pid != os.getpid()
    out = p.wait(None)
    assert out.ok and out.snapshot and out.bytes_read == 1 << 20
    assert not p.proc.is_alive()
    with open_test_store(tmp_path / "local") as st:
        assert [s.id for s in st.snapshots()] == [out.snapshot]


def _locks(store: Path) -> list[Path]:
    return [p for p in (store / "locks").rglob("*") if p.is_file()]


@pytest.mark.parametrize("size, kill_grace", [(2 << 30, 120.0), (64 << 30, 0.5)])
def test_worker_timeout_stops_the_job_and_leaves_no_lock(
    config: Config, tmp_path: Path, size: int, kill_grace: float
) -> None:
    """The child unwinds (finishing the file it reads) and releases its lock; or, killed
    after ``kill_grace``, the lock it left is removed by the parent."""
    with open(tmp_path / "src" / "big.bin", "wb") as f:  # sparse: slow to read, no disk used
        f.truncate(size)
    p = JobProcess(config, "slow", kill_grace=kill_grace)
    p.start()
    # The timeout counts from when the child holds its lock (it is reading then): on a
    # loaded machine its start alone can take longer than the job's 0.6 s.
    deadline = time.monotonic() + 120
    while not _locks(tmp_path / "local") and p.proc.is_alive():
        assert time.monotonic() < deadline, "the job never took its lock"
        time.sleep(0.01)
    out = p.wait(config.jobs["slow"].timeout)
    assert out.result == "failure" and out.error is not None
    assert out.error.startswith("timed out after 0.6s")
    assert p.killed == (kill_grace < 1)
    assert _locks(tmp_path / "local") == []
    with open_test_store(tmp_path / "local") as st:
        assert st.snapshots() == []
