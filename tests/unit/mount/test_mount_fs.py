"""The mount's filesystem answers (casbackup/mount/fs.py) on a real local store, without
FUSE: errnos for what cannot be done, attributes as stored, the refresh rate limit, and
hard links sharing an inode within a snapshot but never across snapshots."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from casbackup.mount.fs import MountFS
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.snapsel import SnapshotFilter
from tests.helpers import make_store


def _err(fn: object, *args: object) -> int:
    with pytest.raises(OSError) as e:
        fn(*args)  # type: ignore[operator]
    assert e.value.errno is not None
    return e.value.errno


def test_answers_and_errnos(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data" * 1000)
    os.link(src / "f", src / "g")
    os.symlink("f", src / "l")
    os.mkfifo(src / "p")
    os.setxattr(src / "f", b"user.k", b"v\x00w")
    os.utime(src / "f", ns=(5, 1_234_567_891))
    st = make_store(tmp_path / "store")
    s1 = backup(st, [str(src)], BackupOptions(time=1_000_000_000.0)).snapshot
    s2 = backup(st, [str(src)], BackupOptions(time=1_000_000_001.0)).snapshot
    now = [0.0]
    fs = MountFS(st, SnapshotFilter(), refresh=10, clock=lambda: now[0])
    moved: list[list[bytes]] = []
    fs.on_links_changed = moved.append
    fs.refresh(force=True)
    rel = os.fsencode(src).lstrip(b"/")
    base = b"/ids/" + s1.id[:8].encode() + b"/" + rel
    a = fs.getattr(base + b"/f")
    assert stat.S_ISREG(a["st_mode"]) and a["st_size"] == 4000
    assert a["st_mtime"] == 1_234_567_891 and a["st_nlink"] == 2
    assert fs.getattr(base + b"/g")["st_ino"] == a["st_ino"]  # hard links: one inode
    other = b"/ids/" + s2.id[:8].encode() + b"/" + rel + b"/f"
    assert fs.getattr(other)["st_ino"] != a["st_ino"]  # never across snapshots
    assert fs.readlink(base + b"/l") == b"f"
    assert fs.getxattr(base + b"/f", b"user.k") == b"v\x00w"
    assert fs.listxattr(base + b"/f") == [b"user.k"]
    assert _err(fs.getxattr, base + b"/f", b"user.none") == errno.ENODATA
    assert _err(fs.getattr, base + b"/nope") == errno.ENOENT
    assert _err(fs.getattr, base + b"/f/x") == errno.ENOTDIR
    assert _err(fs.readdir, base + b"/f") == errno.ENOTDIR
    assert _err(fs.open, base + b"/f", os.O_RDWR) == errno.EROFS
    assert _err(fs.open, base, os.O_RDONLY) == errno.EISDIR
    assert _err(fs.open, base + b"/p", os.O_RDONLY) == errno.ENXIO
    assert _err(fs.readlink, base + b"/f") == errno.EINVAL
    assert _err(fs.read, 999, 10, 0) == errno.EBADF
    fh = fs.open(base + b"/f", os.O_RDONLY)
    assert fs.read(fh, 10, 3998) == b"ta"
    fs.release(fh)
    # a read without an open (the kernel opened the file itself) reads the same bytes
    assert fs.read_path(base + b"/f", 10, 3998) == b"ta"
    assert fs.read_path(base + b"/g", 4096, 0) == b"data" * 1000
    assert _err(fs.read_path, base, 10, 0) == errno.EISDIR
    # a listing carries each entry's complete attributes, as getattr gives them
    assert dict(fs.readdir(base)) == {n: fs.getattr(base + b"/" + n)
                                      for n in (b"f", b"g", b"l", b"p")}
    assert [n for n, _ in fs.readdir(base, 3)] == [b"p"]  # (a listing resumed at 3)
    assert [n for n, _ in fs.readdir(b"/", 2)] == [b"snapshots", b"tags"]
    assert fs.readlink(b"/snapshots/latest") == b"2001-09-09T01:46:41Z"
    assert _err(fs.getattr, b"/snapshots/latest/x") == errno.ENOTDIR  # the kernel follows
    assert sorted(n for n, _ in fs.readdir(b"/")) == [b"hosts", b"ids", b"snapshots", b"tags"]
    # a new snapshot shows only once the list is older than --refresh
    s3 = backup(st, [str(src)], BackupOptions(time=1_000_000_002.0)).snapshot
    assert len(fs.readdir(b"/ids")) == 2
    now[0] = 11.0
    assert {n for n, _ in fs.readdir(b"/ids")} == {s.id[:8].encode() for s in (s1, s2, s3)}
    assert fs.readlink(b"/snapshots/latest") == b"2001-09-09T01:46:42Z"
    # the links that moved are named (for the kernel's cached targets to be dropped)
    host = b"/hosts/" + s3.hostname.encode() + b"/latest"
    assert moved == [[host, b"/snapshots/latest"]] or moved == [[b"/snapshots/latest", host]]
    fs.close()
    st.close()
