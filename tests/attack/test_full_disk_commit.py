"""A full disk and a read-only remount while a paused backup's packs are being indexed
(real processes, a local store on a small tmpfs; the writer's check after each index
object, docs/design.md §8 W1b, and the write ordering of §9).

A backup is stopped (SIGSTOP, a suspended laptop) after its 7th pack's put, before the
packer's index object names its packs; ``unlock --remove-all`` removes its lock and a gc
deletes those packs as unreferenced. Then the store's filesystem is left with only K free
inodes (every object put takes one: its temporary file, linked into place) and the backup
resumes. Over the range of K, the resumed backup fails at every
step of its remaining work in turn: a pack put, the index object's put, and the put of the
index object that W1b writes to replace it (naming only the packs still there). Whatever
failed, the backup ends with one line and exit 1 or 11 and commits nothing; once space is
freed ``verify --read-data`` accepts the store -- no
index object names a gone pack -- and the same backup succeeds and restores exactly.

Before the fix in ``store/commit.py`` (``WriteSession._drop_gone``) the replacement's
failed put left the first index object, naming the 7 gone packs: verify found them missing
(exit 13) and the next backup deduplicated against them, committing a snapshot with lost
files (exit 0). And when the failure was another thread's (the next pack's put) while
an upload thread was writing the index object, the session had stopped checking by then:
``WriteSession.__exit__`` now waits for the uploads in flight (``Store.settle_uploads``).

A backup stopped after its last flush, gc deleting its packs, then the store remounted
read-only: the resumed backup fails with one line; writable again, the store verifies and
the backup succeeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_store, tmpfs_or_skip
from tests.integration.test_gc_beside import (
    Stopped,
    _cli,
    _restores_exactly,
    _snapshots,
    stopped,
)

STALE = "4"
__all__ = ["stopped"]  # the fixture, imported for the tests below


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    # the size string goes into tmpfs's -o: few inodes, so "K puts left" is exact
    yield from tmpfs_or_skip(tmp_path / "mnt", "32m,nr_inodes=400")


def _source(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for i in range(12):
        (src / f"f{i}").write_bytes(os.urandom(300_000))
    return src


def _paused_and_collected(url: str, src: Path, stopped: list[Stopped],
                          point: str = "packer:after-pack:7") -> Stopped:
    """The backup stopped at POINT, its lock removed and its packs gc could take deleted."""
    make_store(url, pack_size=256 << 10).close()
    b = Stopped(url, src, point, CASBACKUP_TEST_LOCK_STALE=STALE)
    stopped.append(b)
    r = _cli("unlock", "--store", url, "--remove-all")
    assert r.returncode == 0, r.stderr
    time.sleep(float(STALE) / 2 + 1)  # the resumed backup has looked stale: W1b checks
    r = _cli("gc", "--store", url, "--max-wait", "0", CASBACKUP_TEST_LOCK_STALE=STALE)
    assert r.returncode == 0, r.stderr
    return b


def _failed_cleanly(url: str, code: int, err: str) -> None:
    assert code in (1, 11), (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("casbackup: "), err
    if code == 11:
        assert "nothing was committed" in err, err


def _store_accepts_and_backs_up(url: str, src: Path, tmp: Path) -> None:
    assert _snapshots(url) == []
    r = _cli("verify", "--store", url, "--read-data")
    assert r.returncode == 0, r.stderr  # no index object names a pack gc deleted
    r = _cli("backup", "--store", url, str(src))
    assert r.returncode == 0, r.stderr
    (snap,) = _snapshots(url)
    _restores_exactly(url, str(snap["id"]), src, tmp)


@pytest.mark.slow
@pytest.mark.parametrize("free_inodes", range(4, 12))
def test_a_full_disk_while_a_paused_backup_indexes_packs_gc_deleted(
        free_inodes: int, small_fs: Path, tmp_path: Path, stopped: list[Stopped]) -> None:
    url = str(small_fs / "store")
    src = _source(tmp_path)
    b = _paused_and_collected(url, src, stopped)
    fill = small_fs / "fill"
    fill.mkdir()
    n = 0
    while os.statvfs(small_fs).f_favail > free_inodes:
        (fill / str(n)).touch()
        n += 1
    code, err = b.resume()
    if code == 0:  # enough room after all (a loaded machine wrote fewer packs meanwhile)
        pytest.skip("the backup had room for its remaining puts")
    _failed_cleanly(url, code, err)
    shutil.rmtree(fill)
    _store_accepts_and_backs_up(url, src, tmp_path)


@pytest.mark.slow
def test_a_read_only_remount_before_a_paused_backup_commits(
        small_fs: Path, tmp_path: Path, stopped: list[Stopped]) -> None:
    """Stopped after its last flush (every pack indexed, no file of the store open for
    writing: Linux refuses to remount a filesystem read-only while one is); gc took the
    backup for gone and deleted its packs; the resumed backup cannot write its intent."""
    url = str(small_fs / "store")
    src = _source(tmp_path)
    b = _paused_and_collected(url, src, stopped, "backup:before-snapshot")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        code, err = b.resume()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    _failed_cleanly(url, code, err)
    _store_accepts_and_backs_up(url, src, tmp_path)
