"""restore's metadata: owner, xattrs, mode and mtime, applied without following anything.

Invariants:
- A file or directory gets its metadata on its own open fd (``fchown``, ``fsetxattr``,
  ``fchmod``, ``futimens``); a symlink by name relative to its verified parent fd with
  ``AT_SYMLINK_NOFOLLOW`` (no mode: Linux has none for symlinks); a FIFO or device node
  through an ``O_PATH`` fd checked to be that type (opening a device can act).
- Ownership first, as root only (``chown`` clears setuid/setgid, so the mode comes
  after); mtime last. A refused chown or xattr is a warning (``warn``), not a failure.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from ..model.tree import BLOCKDEV, CHARDEV, FIFO, Node
from .restore_fs import NotRestored, show

Warn = Callable[[str], None]
MetaFn = Callable[[Node, int, bool, Warn], None]  # (node, fd, as root, warn)
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_IS_TYPE = {FIFO: stat.S_ISFIFO, CHARDEV: stat.S_ISCHR, BLOCKDEV: stat.S_ISBLK}


def _owner_xattrs(n: Node, as_root: bool, warn: Warn, chown: Callable[[int, int], None],
                  setx: Callable[[bytes, bytes], None]) -> None:
    if as_root:
        try:
            chown(n.uid, n.gid)
        except OSError as e:
            warn(f"chown: {e.strerror}")
    for k, v in (n.xattrs or {}).items():
        try:
            setx(k, v)
        except OSError as e:
            warn(f"xattr {show(k)}: {e.strerror}")


def meta_fd(n: Node, fd: int, as_root: bool, warn: Warn) -> None:
    """Metadata of a file or directory, on its fd."""
    _owner_xattrs(n, as_root, warn, lambda u, g: os.fchown(fd, u, g),
                  lambda k, v: os.setxattr(fd, k, v))
    os.fchmod(fd, n.mode)
    os.utime(fd, ns=(n.mtime_ns, n.mtime_ns))


def meta_symlink(n: Node, pfd: int, as_root: bool, warn: Warn) -> None:
    """Metadata of the symlink ``n.name`` in the directory ``pfd``."""
    name = n.name
    _owner_xattrs(
        n, as_root, warn, lambda u, g: os.chown(name, u, g, dir_fd=pfd, follow_symlinks=False),
        lambda k, v: os.setxattr(b"/proc/self/fd/%d/%s" % (pfd, name), k, v,
                                 follow_symlinks=False))
    os.utime(name, ns=(n.mtime_ns, n.mtime_ns), dir_fd=pfd, follow_symlinks=False)


def meta_special(n: Node, pfd: int, as_root: bool, warn: Warn) -> None:
    """Metadata of the FIFO or device node ``n.name`` in ``pfd``, via ``/proc/self/fd``
    of an ``O_PATH`` fd of it."""
    fd = os.open(n.name, _PATH, dir_fd=pfd)
    try:
        if not _IS_TYPE[n.type](os.fstat(fd).st_mode):
            raise NotRestored("the entry was replaced during the restore")
        p = b"/proc/self/fd/%d" % fd
        _owner_xattrs(n, as_root, warn, lambda u, g: os.chown(p, u, g),
                      lambda k, v: os.setxattr(p, k, v))
        os.chmod(p, n.mode)
        os.utime(p, ns=(n.mtime_ns, n.mtime_ns))
    finally:
        os.close(fd)
