"""Restore writes in windows of at most 4,096 entries (ops/restore_window.py); between
windows only the open directories' identities are held. Real processes, a snapshot of
more than two windows:

- stopped (SIGSTOP at ``restore:before-metadata``, after the first window's writes) while
  a directory it is still filling is swapped for a symlink to a directory outside the
  target, and a directory a later window will make is planted as such a symlink, then
  continued: nothing is written outside the target, and the restore does not report a
  clean success.
- killed (kill -9 at ``restore:before-metadata:1``, between the first window's writes and
  its metadata), then ``restore --overwrite if-changed`` again into the same target: the
  result equals the snapshot exactly (content, modes, mtimes, symlinks, hard links).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import assert_same_tree, cli_env, make_store, restored_root, run_cli, tree_state

N = 5000  # files in the big directory: more than one window


def _source(root: Path) -> None:
    big = root / "big"
    big.mkdir(parents=True)
    for i in range(N):
        p = big / f"f{i:05d}"
        p.write_bytes(b"%d\n" % i)
        os.chmod(p, 0o600 if i % 7 == 0 else 0o644)
        os.utime(p, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i))
    os.link(big / "f00001", big / "hard-early")
    z = root / "zz-late"
    z.mkdir()
    (z / "late.txt").write_bytes(b"late")
    os.link(big / "f00002", z / "hard-late")
    os.symlink("../big/f00003", z / "link")
    os.symlink("/etc/passwd", z / "abs-link")
    os.chmod(z, 0o750)


def _backup(tmp: Path) -> tuple[str, Path]:
    src = tmp / "src"
    _source(src)
    url = str(tmp / "store")
    make_store(url).close()
    r = run_cli("backup", "--store", url, str(src), timeout=600)
    assert r.returncode == 0, r.stderr
    return url, src


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _restore(url: str, out: Path, *extra: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "casbackup", "restore", "--store", url,
                             *extra, "latest", str(out)], env=cli_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _all_files(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


def test_directories_swapped_for_symlinks_between_windows_write_nothing_outside(
        tmp_path: Path) -> None:
    url, src = _backup(tmp_path)
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"mine")
    p = _restore(url, out, CASBACKUP_TEST_STOP_AT="restore:before-metadata:1")
    try:
        deadline = time.monotonic() + 300
        while _state(p.pid) != "T":
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "restore never reached its stop point"
            time.sleep(0.05)
        root = restored_root(out, src)
        big = root / "big"
        written = len(os.listdir(big))
        assert 0 < written < N, written  # stopped between windows, inside big/
        os.rename(big, tmp_path / "moved-big")
        os.symlink(outside, big)  # the directory it is filling: now a way out
        os.symlink(outside, root / "zz-late")  # a directory a later window makes
        os.kill(p.pid, signal.SIGCONT)
        _, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert _all_files(outside) == {str(outside / "keep")}, sorted(_all_files(outside))[:5]
    assert (outside / "keep").read_bytes() == b"mine"
    assert p.returncode == 3, (p.returncode, err)  # partial: each entry not written named
    assert b"2 entries could not be restored" in err, err


def test_kill_9_between_windows_then_if_changed_gives_the_snapshot_exactly(
        tmp_path: Path) -> None:
    url, src = _backup(tmp_path)
    out = tmp_path / "out"
    p = _restore(url, out, CASBACKUP_TEST_CRASH_AT="restore:before-metadata:1")
    p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL, p.returncode
    big = restored_root(out, src) / "big"
    assert 0 < len(os.listdir(big)) < N, "the kill was not between windows"
    assert tree_state(src) != tree_state(restored_root(out, src))  # so the rerun must mend
    r = run_cli("restore", "--store", url, "--overwrite", "if-changed", "latest", str(out),
                timeout=600)
    assert r.returncode == 0, r.stderr
    assert_same_tree(src, restored_root(out, src))
