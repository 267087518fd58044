"""Archiver dirty mode (``watch``): clean directories keep the parent's subtree unread;
dirty ones, the directories above them, and any directory whose own stat changed are
rescanned."""

from __future__ import annotations

import os
from pathlib import Path

from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.store import Store
from tests.helpers import assert_same_tree, make_store, restored_root


def _tree(root: Path) -> Path:
    for d in ("a", "b", "c/d"):
        (root / d).mkdir(parents=True)
        for i in range(3):
            (root / d / f"f{i}").write_text(f"{d} {i}\n")
    return root


def _inplace(path: Path, text: str) -> None:
    """Rewrite a file keeping its size and mtime: only an event could reveal it."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _snap(st: Store, src: Path, dirty: set[bytes] | None) -> str:
    r = backup(st, [str(src)], BackupOptions(archive=ArchiveOptions(dirty=dirty)))
    return r.snapshot.id


def _restore(st: Store, sid: str, out: Path, src: Path) -> Path:
    restore(st, sid, str(out))
    return restored_root(out, src)


def test_clean_dirs_are_not_read_dirty_ones_are(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    st = make_store(tmp_path / "store")
    _snap(st, src, None)
    _inplace(src / "a" / "f0", "A 0\n")  # same size and mtime: invisible to stat
    _inplace(src / "c" / "d" / "f1", "D 1\n")
    sid = _snap(st, src, {os.fsencode(src / "c" / "d")})
    got = _restore(st, sid, tmp_path / "r1", src)
    assert (got / "c" / "d" / "f1").read_text() == "D 1\n"  # dirty: rescanned
    assert (got / "a" / "f0").read_text() == "a 0\n"  # clean: parent's subtree kept
    sid = _snap(st, src, None)  # a full scan sees the new ctime
    assert_same_tree(src, _restore(st, sid, tmp_path / "r2", src))


def test_reached_dir_with_changed_stat_is_rescanned_even_if_not_dirty(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    st = make_store(tmp_path / "store")
    _snap(st, src, None)
    (src / "b" / "new").write_text("new\n")  # b's mtime/ctime change
    (src / "c" / "d" / "f2").unlink()
    # only the root and c reported: b and c/d are reached, and their own stat changed
    sid = _snap(st, src, {os.fsencode(src), os.fsencode(src / "c")})
    assert_same_tree(src, _restore(st, sid, tmp_path / "r", src))


def test_dirty_subtree_and_new_dirs(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    st = make_store(tmp_path / "store")
    _snap(st, src, None)
    os.rename(src / "c" / "d", src / "a" / "moved")
    (src / "a" / "moved" / "g").write_text("g\n")
    os.symlink("moved/g", src / "a" / "link")
    dirty = {os.fsencode(p) for p in (src / "c", src / "a", src / "a" / "moved")}
    sid = _snap(st, src, dirty)
    assert_same_tree(src, _restore(st, sid, tmp_path / "r", src))
