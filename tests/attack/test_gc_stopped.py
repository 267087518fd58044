"""A gc stopped (SIGSTOP: a suspended laptop, a frozen VM) past its lock's stale age while
backups run, then continued (SIGCONT), with real processes on a local store
(docs/design.md §8, ops/gc.py). While it is stopped its lock is stale, so a backup commits
a snapshot that deduplicates against the garbage the stopped gc is about to condemn, and a
second gc runs in full; another backup is stopped itself as the first gc resumes. No blob
a snapshot uses is ever deleted: ``verify --read-data`` passes and every committed
snapshot restores exactly; the backup running across the resume either commits such a
snapshot or fails with one line and commits nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli_env, json_result
from tests.integration.test_gc_beside import (
    Stopped,
    _cli,
    _forget_all,
    _history,
    _restores_exactly,
    _snapshots,
)

STALE = "3"  # seconds (CASBACKUP_TEST_LOCK_STALE) for every process here


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def held() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture
def stopped() -> Iterator[list[Stopped]]:
    procs: list[Stopped] = []
    yield procs
    for s in procs:
        s.kill()


def _locks_stale(store: Path) -> None:
    """Wait until every lock object of STORE is older than STALE by the disk's clock."""
    probe = store.parent / "probe"
    deadline = time.monotonic() + 120
    while True:
        probe.write_bytes(b"")
        now = probe.stat().st_mtime
        ages = [now - p.stat().st_mtime for p in (store / "locks").iterdir()]
        if ages and min(ages) > float(STALE) + 0.5:
            return
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_gc_stopped_past_the_stale_age_deletes_no_live_blob(
        tmp_path: Path, held: list[subprocess.Popen[bytes]], stopped: list[Stopped]) -> None:
    """Stopped after its consolidated index, before its record: it resumes to condemn
    packs by a marking that predates the backup and the other gc (``gc:after-record``
    passed as well when tried; one point keeps CI's time: ~30 s on a quiet machine)."""
    point = "gc:after-index"
    url = str(tmp_path / "store")
    _old, new = _history(url, tmp_path)
    assert _cli("gc", "--store", url).returncode == 0  # leaves the epoch record
    _forget_all(url)
    env = cli_env(CASBACKUP_TEST_LOCK_STALE=STALE, CASBACKUP_TEST_STOP_AT=point)
    gc1 = subprocess.Popen([sys.executable, "-m", "casbackup", "gc", "--store", url,
                            "--max-wait", "0", "--json"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    held.append(gc1)
    deadline = time.monotonic() + 120
    while _state(gc1.pid) != "T":
        assert gc1.poll() is None, gc1.communicate()
        assert time.monotonic() < deadline, "gc never reached its stop point"
        time.sleep(0.05)
    _locks_stale(tmp_path / "store")

    # beside the stopped gc: a backup deduplicating against the garbage, a whole gc
    r = _cli("backup", "--store", url, str(new), CASBACKUP_TEST_LOCK_STALE=STALE)
    assert r.returncode == 0, r.stderr
    r = _cli("gc", "--store", url, "--max-wait", "0", "--json", CASBACKUP_TEST_LOCK_STALE=STALE)
    assert r.returncode == 0, r.stderr
    newer = tmp_path / "newer"
    shutil.copytree(new, newer)
    (newer / "more").write_bytes(os.urandom(200_000))
    b = Stopped(url, newer, "backup:before-snapshot", CASBACKUP_TEST_LOCK_STALE=STALE)
    stopped.append(b)

    os.kill(gc1.pid, signal.SIGCONT)
    out, err = gc1.communicate(timeout=300)
    assert gc1.returncode == 0 or err.decode().strip().count("\n") == 0, err
    if gc1.returncode == 0:
        json_result(out)
    code, berr = b.resume()
    assert code == 0 or (berr.strip().count("\n") == 0 and "nothing was committed" in berr), berr

    # finish every record (no stale age now), then every snapshot is whole
    for _ in range(2):
        r = _cli("gc", "--store", url, "--json")
        assert r.returncode == 0, r.stderr
    snaps = _snapshots(url)
    assert len(snaps) == (2 if code == 0 else 1)
    sources = (new, newer)[:len(snaps)]
    for snap, src in zip(sorted(snaps, key=lambda s: str(s["time"])), sources, strict=True):
        _restores_exactly(url, str(snap["id"]), src, tmp_path)
