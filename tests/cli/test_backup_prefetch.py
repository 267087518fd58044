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
from pathlib import Path

import pytest

from tests.helpers import proc_children, run_cli, stopped_cli


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


def _children_at_stop(store: Path, src: Path, *extra: str) -> list[bytes]:
    """Run a backup to its stop point; the children it has there (this small unchanged
    backup starts no save workers: a child is the prefetcher, alive or a zombie)."""
    with stopped_cli("backup", "--store", str(store), *extra, str(src),
                     point="backup:before-snapshot") as proc:
        kids = []
        for pid in proc_children(proc.pid):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                kids.append(f.read())
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
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
