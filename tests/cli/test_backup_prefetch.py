"""Which backups start the prefetch child (source/prefetch.py), seen from outside a real
``python -m casbackup backup`` process: it is stopped just before it writes its snapshot
(``CASBACKUP_TEST_STOP_AT=backup:before-snapshot``, faults.py) and its children are read
from /proc — a prefetch child is still there then, alive or a zombie, since it is reaped
only after the backup.

A plain backup of a warm tree (nothing shows totals: no bar, no ``--json``) starts no
child; ``--json`` (its status lines carry the totals) does.
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


@pytest.fixture
def warm(tmp_path: Path) -> tuple[Path, Path]:
    """A store and a source tree of 40 directories that one backup has just read."""
    store, src = tmp_path / "store", tmp_path / "src"
    assert run_cli("init", "--store", str(store)).returncode == 0
    for d in range(40):
        (src / f"d{d:02}").mkdir(parents=True)
        for f in range(5):
            (src / f"d{d:02}" / f"f{f}").write_bytes(b"%d.%d\n" % (d, f) * 50)
    assert run_cli("backup", "--store", str(store), str(src)).returncode == 0
    return store, src


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rpartition(b")")[2].split()[0].decode()


def _children(pid: int) -> list[bytes]:
    """The command line of every process whose parent is PID, zombies included (theirs
    is empty: a prefetch child that finished its walk is one until it is reaped)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rpartition(b")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read()
        except (OSError, ValueError):
            continue
        if ppid == pid:
            out.append(argv)
    return out


def _children_at_stop(store: Path, src: Path, *extra: str) -> list[bytes]:
    """Run a backup to its stop point; the children it has there (this small unchanged
    backup starts no save workers: a child is the prefetcher, alive or a zombie)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "casbackup", "backup", "--store", str(store), *extra, str(src)],
        env=cli_env(CASBACKUP_TEST_STOP_AT="backup:before-snapshot"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _state(proc.pid) != "T":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the backup never reached its stop point"
            time.sleep(0.02)
        kids = _children(proc.pid)
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return kids


def test_a_plain_backup_of_a_warm_tree_starts_no_prefetch_child(
        warm: tuple[Path, Path]) -> None:
    assert _children_at_stop(*warm) == []


def test_a_json_backup_starts_the_prefetch_child_for_its_totals(
        warm: tuple[Path, Path]) -> None:
    kids = _children_at_stop(*warm, "--json")
    assert len(kids) == 1
    assert kids[0] == b"" or b"casbackup.source.prefetch" in kids[0]
