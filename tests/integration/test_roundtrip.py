"""Exact round trip of every kind of entry a POSIX tree can hold (issue #2, item 4)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.ops.verify import verify
from tests.helpers import assert_same_tree, make_store, open_test_store, restored_root

IS_ROOT = os.geteuid() == 0


def _xattrs_supported(p: Path) -> bool:
    try:
        os.setxattr(p, b"user.probe", b"1")
        os.removexattr(p, b"user.probe")
        return True
    except OSError:
        return False


def build_exotic_tree(root: Path) -> None:
    root.mkdir()
    r = os.fsencode(root)
    (root / "regular.txt").write_bytes(b"hello world\n" * 1000)
    (root / "empty").write_bytes(b"")
    big = os.urandom(3 << 20) + b"\x00" * (2 << 20) + os.urandom(5 << 20)
    (root / "large.bin").write_bytes(big)
    with open(r + b"/not-utf8-\xff\xfe.bin", "wb") as f:
        f.write(b"latin-1 name")
    (root / "new\nline").write_bytes(b"newline in name")
    (root / ("n" * 255)).write_bytes(b"255-byte name")
    (root / "empty-dir").mkdir()
    os.symlink("does/not/exist", root / "dangling")
    os.symlink(b"target-\xff\xfe", r + b"/symlink-non-utf8-target")
    os.symlink("regular.txt", root / "good-link")
    # hard link group of three
    (root / "hl-a").write_bytes(b"shared inode" * 100)
    os.link(root / "hl-a", root / "hl-b")
    (root / "sub").mkdir()
    os.link(root / "hl-a", root / "sub" / "hl-c")
    # sparse: 64 MiB with 4 KiB of data in the middle
    with open(root / "sparse.img", "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"x" * 4096)
    os.mkfifo(root / "fifo")
    if IS_ROOT:
        os.mknod(root / "chardev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.mknod(root / "blockdev", stat.S_IFBLK | 0o600, os.makedev(7, 200))
    if _xattrs_supported(root / "regular.txt"):
        os.setxattr(root / "regular.txt", b"user.comment", b"\x00binary\xffvalue")
        os.setxattr(root / "sub", b"user.dir", b"on a directory")
    for name, mode in (("setuid", 0o4755), ("setgid", 0o2750), ("sticky-dir", 0o1777)):
        p = root / name
        if name.endswith("dir"):
            p.mkdir()
        else:
            p.write_bytes(b"#!/bin/sh\n")
        os.chmod(p, mode)
    (root / "owned").write_bytes(b"owned by someone else")
    if IS_ROOT:
        os.chown(root / "owned", 1234, 5678)
        os.chown(root / "setgid", 0, 100)
    # deep path: more than 4096 bytes
    deep = r + b"/deep"
    os.mkdir(deep)
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(20):
        name = (b"%02d" % i) * 100  # 200 bytes
        os.mkdir(name, dir_fd=fd)
        nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    wfd = os.open(b"leaf.txt", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
    os.write(wfd, b"deep leaf")
    os.close(wfd)
    os.close(fd)
    # nanosecond mtimes at both ends of the calendar
    os.utime(root / "regular.txt", ns=(0, 123_456_789))  # 1970
    os.utime(root / "empty", ns=(0, 4_102_444_800_987_654_321))  # 2100
    os.utime(root / "large.bin", ns=(0, 1_700_000_000_000_000_001))


@pytest.mark.parametrize("encryption", ["repokey", "none"])
def test_roundtrip_exotic_tree_exact(tmp_path: Path, encryption: str) -> None:
    src = tmp_path / "src"
    build_exotic_tree(src)
    store = make_store(tmp_path / "store", encryption)
    res = backup(store, [str(src)], BackupOptions())
    assert res.summary.unreadable == 0
    store.close()
    store = open_test_store(tmp_path / "store")
    out = tmp_path / "out"
    rr = restore(store, "latest", str(out), verify=True)
    root = restored_root(out, src)
    assert_same_tree(src, root)
    # sparse files come back sparse
    st = os.stat(root / "sparse.img")
    assert st.st_size == 64 << 20
    assert st.st_blocks * 512 < 1 << 20
    if IS_ROOT:
        assert rr.warnings == []
    else:  # only ownership and device nodes may be refused to a non-root user
        assert all("chown" in w or "device" in w for w in rr.warnings)
    assert verify(store, read_data=True).ok


def test_single_file_source_and_include_exclude(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_exotic_tree(src)
    store = make_store(tmp_path / "store")
    backup(store, [str(src / "large.bin")], BackupOptions())
    out = tmp_path / "out1"
    restore(store, "latest", str(out))
    assert (restored_root(out, src) / "large.bin").read_bytes() == (src / "large.bin").read_bytes()
    assert os.listdir(restored_root(out, src)) == ["large.bin"]

    backup(store, [str(src)], BackupOptions())
    out2 = tmp_path / "out2"
    restore(store, "latest", str(out2), include=["/**/sub/"], exclude=["hl-c"])
    got = restored_root(out2, src)
    assert sorted(os.listdir(got)) == ["sub"]
    assert os.listdir(got / "sub") == []


def test_restore_refuses_nonempty_target(tmp_path: Path) -> None:
    from casbackup.errors import UsageError

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    store = make_store(tmp_path / "store")
    backup(store, [str(src)], BackupOptions())
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        restore(store, "latest", str(out))
    assert os.listdir(out) == ["precious"]
    restore(store, "latest", str(out), overwrite="always")
    assert (restored_root(out, src) / "f").read_text() == "x"
    assert (out / "precious").read_text() == "keep me"
