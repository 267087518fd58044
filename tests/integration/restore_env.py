"""Helpers for the restore-safety tests: an outside area to attack and its exact state.

``outside_state(root)`` is everything a stray write, chmod, chown, utime, rename or
replacement below ``root`` would change: per entry (by relative path) its lstat type,
mode, owner, inode, size and nanosecond mtime (not nlink: removing a hard link planted in
the target lowers it), a file's content digest and a
symlink's target; the root's own lstat too. ``deep_tmp`` is a tmp_path for trees deeper
than the recursion limit.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _entry(path: bytes) -> tuple[Any, ...]:
    st = os.lstat(path)
    content: Any = None
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            content = hashlib.blake2b(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        content = os.readlink(path)
    return (st.st_mode, st.st_uid, st.st_gid, st.st_ino, st.st_size, st.st_mtime_ns, content)


def outside_state(root: Path) -> dict[bytes, tuple[Any, ...]]:
    r = os.fsencode(root)
    out = {b".": _entry(r)}
    for dirpath, dirnames, filenames in os.walk(r):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, r)] = _entry(p)
    return out


def make_outside(root: Path) -> Path:
    """A directory with a file, a subdirectory and a file in it: what an attack targets."""
    (root / "sub").mkdir(parents=True)
    (root / "victim").write_bytes(b"precious outside content\n")
    (root / "sub" / "deep-victim").write_bytes(b"more outside content\n")
    os.chmod(root / "victim", 0o640)
    os.chmod(root, 0o751)
    os.utime(root / "victim", ns=(1_000_000_000, 1_000_000_000))
    return root


@pytest.fixture
def deep_tmp(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, removed with ``rm -rf`` afterwards: pytest's own clean-up of old
    temporary directories (``shutil.rmtree``, recursive) dies on a 1,000-level tree."""
    yield tmp_path
    subprocess.run(["rm", "-rf", str(tmp_path)], check=False)
