"""restore_fs: verified directory fds, fd-relative removal, printable paths."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casbackup.ops.restore_fs import ROOT, DirFds, identity, open_dir, remove_at, show
from tests.integration.restore_env import deep_tmp, make_outside, outside_state  # noqa: F401

LEVELS = 12


def _chain(root: Path) -> DirFds:
    """root/d0/d1/.../d11, each registered in a DirFds with room for 2 open fds."""
    root.mkdir()
    names = [b"d%d" % i for i in range(LEVELS)]
    parent = [ROOT] + list(range(LEVELS - 1))
    rfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    dirs = DirFds(rfd, parent, names, cap=2)
    for i, n in enumerate(names):
        pfd = dirs.acquire(parent[i])
        os.mkdir(n, dir_fd=pfd)
        fd = open_dir(pfd, n)
        dirs.add(i, fd, identity(os.fstat(fd)))
        dirs.release(parent[i])
    return dirs


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_closed_fds_are_reopened_level_by_level(tmp_path: Path) -> None:
    dirs = _chain(tmp_path / "r")
    base = _open_fds()
    for i in reversed(range(LEVELS)):
        fd = dirs.acquire(i)
        assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / "r" / "/".join(
            f"d{k}" for k in range(i + 1))))
        dirs.release(i)
        assert _open_fds() <= base + 2  # at most cap (+ the root) stay open
    dirs.close()


@pytest.mark.parametrize("swap", ["other-dir", "symlink"])
def test_a_replaced_directory_is_refused(tmp_path: Path, swap: str) -> None:
    dirs = _chain(tmp_path / "r")
    outside = make_outside(tmp_path / "outside")
    for i in reversed(range(LEVELS)):  # only d0 stays open: the next acquire reopens
        dirs.acquire(i)
        dirs.release(i)
    mid = tmp_path / "r" / "d0" / "d1" / "d2"
    os.rename(mid, tmp_path / "moved")
    if swap == "other-dir":
        os.mkdir(mid)
        os.makedirs(mid / "d3" / "d4")
    else:
        os.symlink(outside, mid)
    before = outside_state(outside)
    with pytest.raises(OSError) as ei:
        dirs.acquire(LEVELS - 1)
    want = (errno.ESTALE,) if swap == "other-dir" else (errno.ENOTDIR, errno.ELOOP)
    assert ei.value.errno in want
    assert outside_state(outside) == before
    dirs.close()


@pytest.mark.usefixtures("deep_tmp")
def test_remove_at_is_iterative_and_never_follows(tmp_path: Path) -> None:
    outside = make_outside(tmp_path / "outside")
    root = tmp_path / "junk"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(1500):  # deeper than the recursion limit
        os.mkdir(b"d", dir_fd=fd)
        os.symlink(outside, b"to-outside", dir_fd=fd)
        os.symlink(outside / "victim", b"to-victim", dir_fd=fd)
        if i % 100 == 0:
            os.close(os.open(b"f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
        nfd = os.open(b"d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)
    before = outside_state(outside)
    pfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        remove_at(pfd, b"junk")
        os.symlink(outside, tmp_path / "link")
        remove_at(pfd, b"link")
    finally:
        os.close(pfd)
    assert not os.path.lexists(root) and not os.path.lexists(tmp_path / "link")
    assert outside_state(outside) == before


@given(st.binary(max_size=40))
def test_show_is_printable_one_line(b: bytes) -> None:
    s = show(b)
    assert s.isprintable() and "\n" not in s
    assert not s.startswith("b'")
    if all(0x20 <= c < 0x7F and c != 0x5C for c in b):
        assert s == b.decode()
