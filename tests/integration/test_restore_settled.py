"""restore --overwrite if-changed leaves a settled file alone (issue #14 item 1): a file
whose size, mtime, mode (and owner, as root) are the snapshot's is neither read nor
opened -- checked with inotify's IN_OPEN on its directory, not with timing -- while a
file that differs only in its mode, or has xattrs in the snapshot, still gets its
metadata.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from pathlib import Path

import pytest

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from tests.helpers import make_store, restored_root, tree_state

IN_OPEN, IN_NONBLOCK = 0x20, 0o4000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _opened(fd: int) -> set[bytes]:
    """Names of the files opened in the watched directory since the last call."""
    names: set[bytes] = set()
    while True:
        try:
            buf = os.read(fd, 65536)
        except BlockingIOError:
            return names
        off = 0
        while off < len(buf):
            _, mask, _, ln = struct.unpack_from("iIII", buf, off)
            name = buf[off + 16: off + 16 + ln].rstrip(b"\0")
            if mask & IN_OPEN and name:
                names.add(name)
            off += 16 + ln


def test_settled_files_are_not_opened_and_a_changed_mode_is_restored(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("same", "chmodded", "edited"):
        (src / name).write_bytes(name.encode() * 1000)
    st_ = make_store(tmp_path / "store")
    backup(st_, [str(src)], BackupOptions())
    target = tmp_path / "t"
    restore(st_, "latest", str(target))
    root = restored_root(target, src)
    want = tree_state(root)
    m = os.stat(root / "chmodded")
    os.chmod(root / "chmodded", 0o600)  # mode only: size and mtime stay the snapshot's
    os.utime(root / "chmodded", ns=(m.st_atime_ns, m.st_mtime_ns))
    (root / "edited").write_bytes(b"other")
    ino = _libc.inotify_init1(IN_NONBLOCK | os.O_CLOEXEC)
    if ino < 0:
        pytest.skip(f"inotify: {os.strerror(ctypes.get_errno() or errno.ENOSYS)}")
    try:
        assert _libc.inotify_add_watch(ino, os.fsencode(root), IN_OPEN) >= 0
        _opened(ino)
        res = restore(st_, "latest", str(target), overwrite="if-changed")
        opened = _opened(ino)
    finally:
        os.close(ino)
    assert tree_state(root) == want
    assert b"same" not in opened  # settled: not even opened
    assert {b"chmodded", b"edited"} <= opened
    assert res.unchanged == 2 and res.files == 1
