"""restore in place under attack (issue #14 item 1, hardening): a full disk, a read-only
target, a write error part-way through an update, non-UTF-8 names under --delete.

What must hold: every file is either its old content or the snapshot's, never a
truncated mix that looks complete (a file the restore could not finish never gets the
snapshot's mtime, so ``if-changed`` compares it by content next time); the command ends
non-zero with one line saying why, never a traceback; a rerun with room finishes it.
Real stores, real tmpfs mounts (skipped where mounting is refused), real processes.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from casbackup.chunking import ChunkerParams
from casbackup.ops import restore_blobs
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.store import Store
from tests.helpers import (
    cli_env,
    json_lines,
    make_store,
    restored_root,
    run_cli,
    tmpfs_mount,
    tree_state,
)


@contextlib.contextmanager
def _tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    with contextlib.ExitStack() as stack:
        try:
            m = stack.enter_context(tmpfs_mount(mnt, size))
        except OSError as e:
            pytest.skip(f"cannot mount a tmpfs: {e}")
        yield m


def _source(src: Path) -> dict[str, bytes]:
    """A large multi-chunk file and small ones; their contents by name."""
    src.mkdir()
    want = {"big.bin": os.urandom(3 << 20)}
    for i in range(6):
        want[f"f{i}"] = os.urandom(20_000 + i)
    for name, data in want.items():
        (src / name).write_bytes(data)
    return want


def _mutate(root: Path) -> dict[str, bytes]:
    """Change the restored tree so that restoring needs room: big.bin cut to 1 MiB with a
    byte flipped, f0 edited in place, f1 cut in half. Returns the old contents."""
    with open(root / "big.bin", "r+b") as f:
        f.truncate(1 << 20)
        f.seek(1 << 19)
        f.write(b"\x00\xff")
    with open(root / "f0", "r+b") as f:
        f.seek(100)
        f.write(b"changed")
    with open(root / "f1", "r+b") as f:
        f.truncate(10_000)
    return {p.name: p.read_bytes() for p in root.iterdir()}


def _old_or_new(root: Path, old: dict[str, bytes], new: dict[str, bytes],
                snap_mtime: dict[str, int]) -> None:
    for name, data in new.items():
        p = root / name
        assert p.exists(), f"{name} was removed"
        got = p.read_bytes()
        if got == data:
            continue
        if got != old[name]:  # a mix: allowed only where it cannot look restored
            assert os.stat(p).st_mtime_ns != snap_mtime[name], f"{name}: a mix looks complete"


def _filled(mnt: Path) -> None:
    """Fill the filesystem at MNT to the last byte (outside the restore target)."""
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\xaa" * block)
    finally:
        os.close(fd)


def test_full_disk_during_an_in_place_update_keeps_the_old_file_and_a_rerun_finishes(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    new = _source(src)
    store = tmp_path / "store"
    st_ = make_store(store)
    backup(st_, [str(src)], BackupOptions())
    st_.close()
    snap_mtime = {n: os.stat(src / n).st_mtime_ns for n in new}
    with _tmpfs(tmp_path / "mnt", "8m") as mnt:
        target = mnt / "t"
        assert run_cli("restore", "--store", str(store), "latest", str(target)).returncode == 0
        root = restored_root(target, src)
        old = _mutate(root)
        _filled(mnt)
        r = run_cli("restore", "--store", str(store), "--overwrite", "if-changed", "latest",
                    str(target), env=cli_env())
        err = r.stderr.decode()
        assert r.returncode == 3, err
        assert "Traceback" not in err and "No space left on device" in err
        assert "big.bin" in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("casbackup: ") and "could not be restored" in last
        _old_or_new(root, old, new, snap_mtime)
        assert (root / "big.bin").read_bytes() == old["big.bin"]  # reserved first: untouched
        os.unlink(mnt / "filler")
        r = run_cli("restore", "--store", str(store), "--overwrite", "if-changed", "latest",
                    str(target), env=cli_env())
        assert r.returncode == 0, r.stderr
        assert tree_state(root) == tree_state(src)


def test_read_only_target_is_refused_in_one_line_and_left_alone(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _source(src)
    store = tmp_path / "store"
    st_ = make_store(store)
    backup(st_, [str(src)], BackupOptions())
    st_.close()
    with _tmpfs(tmp_path / "mnt", "16m") as mnt:
        target = mnt / "t"
        assert run_cli("restore", "--store", str(store), "latest", str(target)).returncode == 0
        root = restored_root(target, src)
        _mutate(root)
        before = tree_state(mnt)
        ro = os.system(f"mount -o remount,ro {mnt}")  # noqa: S605  (a test's own mount)
        if ro != 0:
            pytest.skip("cannot remount the tmpfs read-only")
        try:
            for extra in ([], ["--delete"]):
                r = run_cli("restore", "--store", str(store), "--overwrite", "if-changed",
                            *extra, "latest", str(target), env=cli_env())
                err = r.stderr.decode().strip().splitlines()
                assert r.returncode == 2, err
                assert len(err) == 1 and "read-only filesystem" in err[0], err
            r = run_cli("restore", "--store", str(store), "latest", str(mnt / "new"))
            assert r.returncode == 2 and b"read-only" in r.stderr
        finally:
            os.system(f"mount -o remount,rw {mnt}")  # noqa: S605
        assert tree_state(mnt) == before


@pytest.fixture
def backed_up(tmp_path: Path) -> Iterator[tuple[Store, Path, dict[str, bytes]]]:
    src = tmp_path / "src"
    new = _source(src)
    # chunks of at most 1 MiB: big.bin's lost 2 MiB are at least two blobs, so the update
    # makes at least five writes (with the default chunker a 3 MiB file can be one blob:
    # three writes in all, and fail_after=3 injected nothing -- a CI run found that)
    st_ = make_store(tmp_path / "store", chunker=ChunkerParams(
        min_size=64 << 10, avg_size=256 << 10, max_size=1 << 20, seed=3))
    backup(st_, [str(src)], BackupOptions())
    yield st_, src, new
    st_.close()


@pytest.mark.parametrize("fail_after", [0, 1, 3])
def test_write_error_part_way_through_an_update_never_looks_complete(
        backed_up: tuple[Store, Path, dict[str, bytes]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, fail_after: int) -> None:
    """EROFS (the filesystem remounted read-only, say) from the FAIL_AFTER+1-th write on:
    each file is old, new, or a mix whose mtime is not the snapshot's; none is removed;
    the failures are listed; a rerun restores everything."""
    st_, src, new = backed_up
    snap_mtime = {n: os.stat(src / n).st_mtime_ns for n in new}
    target = tmp_path / "t"
    restore(st_, "latest", str(target))
    root = restored_root(target, src)
    old = _mutate(root)
    real = os.pwrite
    calls = [0]

    def pwrite(fd: int, data: bytes | memoryview, off: int) -> int:
        calls[0] += 1
        if calls[0] > fail_after:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(fd, data, off)

    monkeypatch.setattr(restore_blobs.os, "pwrite", pwrite)
    res = restore(st_, "latest", str(target), overwrite="if-changed")
    monkeypatch.setattr(restore_blobs.os, "pwrite", real)
    assert calls[0] > fail_after, "the update made too few writes to inject the fault"
    assert res.failed and all("Read-only file system" in f for f in res.failed)
    _old_or_new(root, old, new, snap_mtime)
    res = restore(st_, "latest", str(target), overwrite="if-changed")
    assert not res.failed
    assert tree_state(root) == tree_state(src)


def test_delete_removes_non_utf8_names_and_keeps_the_snapshots_own(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    bsrc = os.fsencode(src)
    keep = bsrc + b"/kept-\xff\xfe.txt"
    with open(keep, "wb") as f:
        f.write(b"the snapshot has me")
    (src / "plain").write_bytes(b"plain")
    store = tmp_path / "store"
    st_ = make_store(store)
    backup(st_, [str(src)], BackupOptions())
    st_.close()
    target = tmp_path / "t"
    assert run_cli("restore", "--store", str(store), "latest", str(target)).returncode == 0
    root = os.fsencode(restored_root(target, src))
    with open(root + b"/stray-\x80\x81", "wb") as f:
        f.write(b"not in the snapshot")
    os.mkdir(root + b"/dir-\xc3\x28")  # an invalid UTF-8 sequence
    with open(root + b"/dir-\xc3\x28/inner-\xff", "wb") as f:
        f.write(b"x")
    os.symlink(b"/etc/passwd", root + b"/link-\xfe")
    r = run_cli("restore", "--store", str(store), "--json", "--overwrite", "if-changed",
                "--delete", "--dry-run", "latest", str(target))
    assert r.returncode == 0, r.stderr
    deleted = sorted(m["item"] for m in json_lines(r.stdout, "verbose_status")
                     if m["action"] == "deleted")
    assert len(deleted) == 3 and all("\\x" in d for d in deleted), deleted
    assert os.path.lexists(root + b"/stray-\x80\x81")  # a dry run deletes nothing
    r = run_cli("restore", "--store", str(store), "--overwrite", "if-changed", "--delete",
                "latest", str(target))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(root)) == [b"kept-\xff\xfe.txt", b"plain"]
    with open(root + b"/kept-\xff\xfe.txt", "rb") as f:
        assert f.read() == b"the snapshot has me"
    assert os.path.exists("/etc/passwd")
