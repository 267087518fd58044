"""Resumable restore (issue #14 item 7): a restore killed with SIGKILL part-way and run
again with ``--overwrite if-changed`` finishes only what is missing.

Real processes (the CLI) killed at crash points (``casbackup.faults``): after the N-th
blob written, and before the directories' metadata. After each kill no file looks
complete (snapshot size and mtime) unless its content is the snapshot's; the rerun fetches
and writes at most what was not yet in place, and a third run reads nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from casbackup.ops.backup import BackupOptions, backup
from tests.helpers import cli_env, make_store, restored_root, run_cli, tree_state


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("resume")
    src = base / "src"
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(15):
            (src / f"d{d}" / f"f{i}").write_bytes(os.urandom(20_000 + 997 * i))
    (src / "big").write_bytes(os.urandom(6 << 20))
    st = make_store(base / "store")
    backup(st, [str(src)], BackupOptions())
    st.close()
    return base, src


def _summary(out: bytes) -> dict[str, int]:
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    return lines[-1]  # type: ignore[no-any-return]


def _complete_looking_bytes(root: Path, src: Path) -> int:
    """Bytes of files that look restored (snapshot size and mtime); each must be."""
    total = 0
    for p in src.rglob("*"):
        if not p.is_file():
            continue
        q = root / p.relative_to(src)
        if not q.exists():
            continue
        a, b = os.stat(p), os.stat(q)
        if (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns):
            assert q.read_bytes() == p.read_bytes(), f"{q} looks complete but is not"
            total += a.st_size
    return total


@pytest.mark.parametrize("crash", ["restore:blob:1", "restore:blob:7", "restore:blob:25",
                                   "restore:before-metadata"])
def test_killed_restore_rerun_if_changed_finishes_only_what_is_missing(
    stored: tuple[Path, Path], tmp_path: Path, crash: str
) -> None:
    base, src = stored
    target = tmp_path / "t"
    args = ("restore", "--store", str(base / "store"), "--json")
    r = run_cli(*args, "latest", str(target), env=cli_env(CASBACKUP_TEST_CRASH_AT=crash))
    assert r.returncode == -9, r.stderr
    root = restored_root(target, src)
    done = _complete_looking_bytes(root, src)
    if crash != "restore:blob:1":
        assert done > 0  # some files were finished before the kill: the rerun must keep them
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    r = run_cli(*args, "--overwrite", "if-changed", "latest", str(target))
    assert r.returncode == 0, r.stderr
    again = _summary(r.stdout)
    assert tree_state(root) == tree_state(src)
    assert again["written_bytes"] <= total - done
    assert again["read_bytes"] < total * 1.01 - done + 4096
    if crash == "restore:before-metadata":
        assert again["read_bytes"] == again["written_bytes"] == 0
    r = run_cli(*args, "--overwrite", "if-changed", "latest", str(target))
    assert r.returncode == 0, r.stderr
    third = _summary(r.stdout)
    assert (third["read_bytes"], third["written_bytes"], third["files_restored"]) == (0, 0, 0)
