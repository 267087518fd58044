"""kill -9 a backup at several points; the rerun reuses the work and the store stays
sound (issue #2, item 8; DESIGN §9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casbackup.ops.verify import verify
from tests.helpers import assert_same_tree, cli_env, open_test_store, restored_root, run_cli


def _source(root: Path, mib: int = 24) -> Path:
    root.mkdir()
    for i in range(mib):
        (root / f"rand{i:02d}.bin").write_bytes(os.urandom(1 << 20))
    (root / "text").mkdir()
    for i in range(300):
        (root / "text" / f"t{i}.txt").write_text(f"line {i}\n" * (i * 7 + 1))
    return root


def _init(store: Path) -> None:
    # 1 MiB packs so a small source spans many packs and index flushes (every 8 packs)
    r = run_cli("init", "--store", str(store), "--pack-size", "1")
    assert r.returncode == 0, r.stderr


def _finish_and_check(store: Path, src: Path, tmp: Path) -> None:
    r = run_cli("backup", "--store", str(store), str(src), "--json")
    assert r.returncode == 0, r.stderr
    st = open_test_store(store)
    rep = verify(st, read_data=True)
    assert rep.ok, rep.problems
    out = tmp / "restore"
    r = run_cli("restore", "--store", str(store), "latest", str(out))
    assert r.returncode == 0, r.stderr
    assert_same_tree(src, restored_root(out, src))


@pytest.mark.parametrize("point", ["packer:after-pack:3", "packer:after-index:1",
                                   "packer:after-index:2", "backup:before-snapshot"])
def test_backup_killed_at_point_then_rerun(tmp_path: Path, point: str) -> None:
    src = _source(tmp_path / "src")
    store = tmp_path / "store"
    _init(store)
    r = run_cli("backup", "--store", str(store), str(src),
                env=cli_env(CASBACKUP_TEST_CRASH_AT=point))
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert not list((store / "snapshots").glob("*")), "no snapshot may exist after the crash"
    packs_before = {p.name for p in (store / "packs").rglob("*") if p.is_file()}
    indexed_before = len(list((store / "index").glob("*")))
    if point.startswith("packer:after-index"):
        assert indexed_before >= 1
    # the crashed run left a lock of a dead pid: the next backup ignores it as stale
    _finish_and_check(store, src, tmp_path)
    if indexed_before:
        # packs that were indexed before the crash were reused, not uploaded again
        st = open_test_store(store)
        st.load_full_index()
        assert packs_before & set(st.index.packs)


def test_backup_killed_from_outside_midway(tmp_path: Path) -> None:
    src = _source(tmp_path / "src", mib=48)
    store = tmp_path / "store"
    _init(store)
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", "backup", "--store", str(store),
                             str(src)], env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(list((store / "packs").rglob("*"))) >= 12 or proc.poll() is not None:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the backup finished before it could be killed"
    assert not list((store / "snapshots").glob("*"))
    _finish_and_check(store, src, tmp_path)
