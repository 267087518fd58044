"""restore's filesystem layer: every call relative to a directory fd restore verified.

Invariants:
- No path below the restore target is ever handed to the kernel whole: each entry is
  reached as ``name`` relative to the fd of its parent, and each directory fd was opened
  with ``O_DIRECTORY | O_NOFOLLOW`` relative to its own parent's fd, so a symlink planted
  anywhere in the target is never followed (``ENOTDIR``), only replaced.
- A directory reopened after its fd was closed must be the same inode (device, inode)
  as when restore first verified it; otherwise the open fails (``ESTALE``).
- Removing an entry in the way (``remove_at``) is itself fd-relative and iterative: it
  unlinks symlinks, never follows them, and any depth of directories is removed without
  recursion.
- ``show`` renders a path for a message: printable, one line, never a bytes repr.
- ``reserve`` allocates a file's blocks (``fallocate(2)``, mode 0: the data already there
  is never changed) before restore overwrites them in place, so a full filesystem fails
  the update before its first byte is written; a filesystem without ``fallocate`` is
  not reserved on (never glibc's emulation, which writes).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import threading
from collections import OrderedDict

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ROOT = -1  # the index of the target directory itself in a DirFds


# the process's own symbols (libc's among them): find_library would run `ldconfig -p`
_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


def reserve(fd: int, ranges: list[tuple[int, int]]) -> None:
    """Allocate the byte RANGES ((offset, length), a file may grow) of FD, or raise the
    OSError (ENOSPC, EDQUOT, ...) having changed no byte of the file's content."""
    for off, ln in ranges:
        if ln > 0 and _fallocate(fd, 0, off, ln) != 0:
            err = ctypes.get_errno()
            if err in (errno.EOPNOTSUPP, errno.ENOSYS):
                return  # not supported here: the writes themselves will say
            raise OSError(err, os.strerror(err))


class NotRestored(OSError):
    """Why an entry is not restored (the message): something in the way, an entry
    replaced during the restore, a hard link's file that failed."""


def show(path: bytes) -> str:
    """PATH for a message: undecodable bytes as ``\\xNN``, control characters escaped."""
    text = path.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def open_dir(parent_fd: int, name: bytes) -> int:
    """A verified fd of the directory ``name`` in ``parent_fd`` (a symlink: ENOTDIR)."""
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


def remove_at(parent_fd: int, name: bytes) -> None:
    """Remove whatever ``name`` in ``parent_fd`` is (a whole directory tree, iteratively)."""
    try:
        os.unlink(name, dir_fd=parent_fd)
        return
    except IsADirectoryError:
        pass
    except PermissionError:  # Linux says EISDIR; some filesystems EPERM for a directory
        if not stat.S_ISDIR(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
            raise
    # frames: (parent fd, name, own fd, subdirectories still to remove)
    stack: list[tuple[int, bytes, int, list[bytes]]] = []
    stack.append((parent_fd, name, open_dir(parent_fd, name), []))
    try:
        stack[0][3].extend(_clear_files(stack[0][2]))
        while stack:
            pfd, nm, fd, subdirs = stack[-1]
            if subdirs:
                sub = subdirs.pop()
                sfd = open_dir(fd, sub)
                stack.append((fd, sub, sfd, []))
                stack[-1][3].extend(_clear_files(sfd))
                continue
            stack.pop()
            os.close(fd)
            os.rmdir(nm, dir_fd=pfd)
    finally:
        for _, _, fd, _ in stack:
            os.close(fd)


def _clear_files(fd: int) -> list[bytes]:
    """Unlink every non-directory in ``fd``; the names of its subdirectories."""
    subdirs = []
    with os.scandir(fd) as it:
        for e in it:
            n = os.fsencode(e.name)
            if e.is_dir(follow_symlinks=False):
                subdirs.append(n)
            else:
                os.unlink(n, dir_fd=fd)
    return subdirs


class DirFds:
    """Open, verified directory fds by item index (``ROOT``: the target), at most about
    ``cap`` kept open (least recently used closed first; never one in use).

    ``acquire(i)`` reopens a closed one from its nearest open ancestor, checking each
    level's identity; ``release(i)`` ends a use. Thread-safe.
    """

    def __init__(self, root_fd: int, parent: list[int], names: list[bytes], cap: int) -> None:
        self._parent = parent
        self._names = names
        self._cap = cap
        self._fds: OrderedDict[int, int] = OrderedDict({ROOT: root_fd})
        self._ids: dict[int, tuple[int, int]] = {ROOT: identity(os.fstat(root_fd))}
        self._use: dict[int, int] = {ROOT: 1}  # the root is never closed by eviction
        self._lock = threading.Lock()

    def add(self, idx: int, fd: int, ident: tuple[int, int]) -> None:
        """Register directory ``idx``, just opened and verified as ``fd``."""
        with self._lock:
            self._fds[idx] = fd
            self._ids[idx] = ident
            self._evict()

    def known(self, idx: int) -> bool:
        return idx in self._ids

    def ident(self, idx: int) -> tuple[int, int] | None:
        """The (device, inode) directory ``idx`` was registered with."""
        return self._ids.get(idx)

    def acquire(self, idx: int) -> int:
        with self._lock:
            fd = self._fds.get(idx)
            if fd is None:
                chain = []
                j = idx
                while j not in self._fds:
                    chain.append(j)
                    j = self._parent[j]
                fd = self._fds[j]
                for k in reversed(chain):
                    fd = self._reopen(fd, k)
            else:
                self._fds.move_to_end(idx)
            self._use[idx] = self._use.get(idx, 0) + 1
            self._evict()
            return fd

    def release(self, idx: int) -> None:
        with self._lock:
            self._use[idx] -= 1

    def _reopen(self, parent_fd: int, idx: int) -> int:
        fd = open_dir(parent_fd, self._names[idx])
        if identity(os.fstat(fd)) != self._ids.get(idx):
            os.close(fd)
            raise OSError(errno.ESTALE, "directory was replaced during the restore")
        self._fds[idx] = fd
        return fd

    def _evict(self) -> None:
        if len(self._fds) <= self._cap:
            return
        for k in [k for k in self._fds if not self._use.get(k)]:
            os.close(self._fds.pop(k))
            if len(self._fds) <= self._cap:
                return

    def close(self) -> None:
        """Close every fd, the root's too (a DirFds owns the fd it is given)."""
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds = OrderedDict()
