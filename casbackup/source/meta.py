"""Turn ``lstat`` results into model Nodes (without content), cheaply.

Invariants:
- Paths and names are ``bytes`` end to end (``os.fsencode``), so names that are not UTF-8
  survive; nothing here decodes a name.
- uid/gid → user/group names are looked up once per id (cached).
- xattrs are read without following symlinks; a filesystem without xattr support
  yields none rather than failing the backup.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from functools import lru_cache

from ..model.tree import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    SOCKET,
    SYMLINK,
    Node,
)

_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM, errno.EACCES}


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def node_type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    if stat.S_ISFIFO(mode):
        return FIFO
    if stat.S_ISCHR(mode):
        return CHARDEV
    if stat.S_ISBLK(mode):
        return BLOCKDEV
    return SOCKET


def read_xattrs(path: bytes) -> dict[bytes, bytes] | None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in _NO_XATTR:
            return None
        raise
    if not names:
        return None
    out: dict[bytes, bytes] = {}
    for n in names:
        try:
            out[os.fsencode(n)] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _NO_XATTR:
                raise
    return out or None


def node_from_stat(name: bytes, path: bytes, st: os.stat_result) -> Node:
    t = node_type(st.st_mode)
    n = Node(
        name=name,
        type=t,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        user=user_name(st.st_uid),
        group=group_name(st.st_gid),
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        inode=st.st_ino,
        device=st.st_dev,
        nlink=st.st_nlink,
        size=st.st_size if t in (FILE, SYMLINK) else 0,
    )
    if t == SYMLINK:
        n.target = os.readlink(path)
    elif t in (CHARDEV, BLOCKDEV):
        n.rdev = st.st_rdev
    elif t == FILE and st.st_blocks * 512 < st.st_size:
        n.sparse = True
    n.xattrs = read_xattrs(path)
    return n
