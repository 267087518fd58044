"""Path helpers for trees deeper than PATH_MAX.

Invariants: any path may exceed the kernel's 4096-byte limit; code that touches the
filesystem either uses ``*at`` calls relative to an open directory fd, or ``short_path``,
which names an entry through ``/proc/self/fd/<dirfd>/<name>`` when the real path is too
long (for calls, like the xattr ones, that take no ``dir_fd``).
"""

from __future__ import annotations

import contextlib
import os
import resource

LONG = 3800


def short_path(full: bytes, dir_fd: int, name: bytes) -> bytes:
    if len(full) < LONG:
        return full
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def open_dir_at(dir_fd: int | None, name: bytes) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    return os.open(name, flags, dir_fd=dir_fd)


def raise_fd_limit() -> None:
    """Deep trees hold one directory fd per level: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
