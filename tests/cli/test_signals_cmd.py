"""SIGINT and SIGTERM in the middle of a command (real processes): exit 130 / 143 with one
line saying what was left undone, never 0, and the command's lock object is gone.

The commands are stopped at a known moment with ``CASBACKUP_TEST_PAUSE_AT`` (faults.py),
holding their lock; ``backup --stdin`` is also stopped without any hook, blocked on a pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cli_env, run_cli

EXIT = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    assert run_cli("init", "--store", str(s)).returncode == 0
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(20):
        (src / "d" / f"f{i}").write_bytes(os.urandom(3000 + i))
    assert run_cli("backup", "--store", str(s), str(src)).returncode == 0
    return s


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never reached its pause point"
        time.sleep(0.05)


def _interrupt(args: list[str], point: str, sig: int, tmp_path: Path) -> tuple[int, str]:
    marker = tmp_path / "paused"
    env = cli_env(CASBACKUP_TEST_PAUSE_AT=point, CASBACKUP_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(marker, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _no_locks(store: Path) -> None:
    assert list((store / "locks").iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_backup_interrupted_writes_no_snapshot_and_releases_its_lock(
        store: Path, tmp_path: Path, sig: int) -> None:
    (tmp_path / "src" / "new").write_bytes(os.urandom(5000))
    before = sorted((store / "snapshots").iterdir())
    code, err = _interrupt(["backup", "--store", str(store), str(tmp_path / "src")],
                           "backup:before-snapshot", sig, tmp_path)
    assert code == EXIT[sig][0]
    assert _one_line(err) == (f"casbackup: {EXIT[sig][1]}: backup did not finish: "
                              "no snapshot was written")
    assert sorted((store / "snapshots").iterdir()) == before
    _no_locks(store)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_restore_interrupted_says_the_target_is_incomplete(
        store: Path, tmp_path: Path, sig: int) -> None:
    target = tmp_path / "out"
    code, err = _interrupt(["restore", "--store", str(store), "latest", str(target)],
                           "restore:before-metadata", sig, tmp_path)
    assert code == EXIT[sig][0]
    assert _one_line(err) == (f"casbackup: {EXIT[sig][1]}: restore of latest into {target} "
                              "is incomplete")
    assert target.exists()  # it was stopped half-way: files written, metadata not
    _no_locks(store)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_gc_interrupted_releases_its_exclusive_lock(
        store: Path, tmp_path: Path, sig: int) -> None:
    (tmp_path / "src" / "d" / "f0").write_bytes(os.urandom(4000))
    assert run_cli("backup", "--store", str(store), str(tmp_path / "src")).returncode == 0
    first = sorted((store / "snapshots").iterdir(), key=lambda p: p.stat().st_mtime_ns)[0]
    assert run_cli("forget", "--store", str(store), first.name).returncode == 0
    code, err = _interrupt(["gc", "--store", str(store), "--max-unused", "0",
                            "--keep-unindexed-for", "0s"], "gc:after-index", sig, tmp_path)
    assert code == EXIT[sig][0]
    assert _one_line(err).startswith(f"casbackup: {EXIT[sig][1]}: gc did not finish: ")
    _no_locks(store)
    assert run_cli("gc", "--store", str(store)).returncode == 0  # nothing blocks it


def test_verify_interrupted_says_the_check_is_incomplete(store: Path, tmp_path: Path) -> None:
    code, err = _interrupt(["verify", "--store", str(store), "--read-data"],
                           "store:load-snapshot", signal.SIGINT, tmp_path)
    assert code == 130
    assert _one_line(err) == ("casbackup: interrupted: verify did not finish: the store was "
                              "not checked completely")
    _no_locks(store)


def test_sync_interrupted_names_the_destination(store: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    assert run_cli("init", "--store", str(dst), "--from", str(store)).returncode == 0
    code, err = _interrupt(["sync", str(store), str(dst)], "sync:before-snapshot",
                           signal.SIGINT, tmp_path)
    assert code == 130
    assert _one_line(err).startswith(f"casbackup: interrupted: sync to {dst} did not finish")
    assert not (dst / "snapshots").exists() or not list((dst / "snapshots").iterdir())
    _no_locks(store)
    _no_locks(dst)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_backup_of_a_stalled_stdin_is_interrupted(store: Path, sig: int) -> None:
    """No hook: the process blocks reading a pipe the test holds open, lock held."""
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", "backup", "--store",
                             str(store), "--stdin"], env=cli_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(1 << 20))
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while len(list((store / "locks").iterdir())) == 0:  # the backup took its lock
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT[sig][0]
    assert "no snapshot was written" in _one_line(err.decode())
    assert len(list((store / "snapshots").iterdir())) == 1
    _no_locks(store)
