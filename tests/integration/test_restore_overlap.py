"""restore creates entries in one thread while packs are fetched and written in others."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from casbackup.ops import restore_write
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from tests.helpers import assert_same_tree, make_store, restored_root


def _source(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    for i in range(30):
        (root / "a" / f"f{i}").write_bytes(os.urandom(20_000 + i))
    (root / "a" / "b" / "big").write_bytes(os.urandom(3 << 20))
    os.link(root / "a" / "f1", root / "a" / "b" / "link-to-f1")
    os.symlink("f2", root / "a" / "sym")
    return root


def test_slow_creation_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path / "src")
    st = make_store(tmp_path / "store")
    backup(st, [str(src)], BackupOptions())
    original = restore_write.Restorer._create_one

    def slow(self: Any, pfd: int, i: int) -> None:
        time.sleep(0.005)  # writers get ahead of the creator and must wait
        original(self, pfd, i)

    monkeypatch.setattr(restore_write.Restorer, "_create_one", slow)
    target = tmp_path / "restore"
    restore(st, "latest", str(target))
    assert_same_tree(src, restored_root(target, src))


@pytest.mark.parametrize(("method", "name"), [
    ("_create_one", b"big"),  # a multi-blob file: made by the creator thread
    ("_create_write", b"f7"),  # a one-blob file: made by the write that fills it
])
def test_creation_failure_is_reported_not_hung(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, name: bytes
) -> None:
    """A file that cannot be created (ENOSPC) is named in ``failed``; the rest is restored
    (before: the first such error ended the restore half-way)."""
    src = _source(tmp_path / "src")
    st = make_store(tmp_path / "store")
    backup(st, [str(src)], BackupOptions())
    original = getattr(restore_write.Restorer, method)

    def failing(self: Any, *args: Any) -> None:
        i = args[0] if method == "_create_write" else args[1]
        if self.items[i].node.name == name:
            raise OSError(28, "No space left on device")
        original(self, *args)

    monkeypatch.setattr(restore_write.Restorer, method, failing)
    res = restore(st, "latest", str(tmp_path / "restore"))
    assert len(res.failed) == 1
    assert res.failed[0].endswith(os.fsdecode(b"/" + name) + ": No space left on device")
    got = restored_root(tmp_path / "restore", src)
    lost = next(got.rglob(os.fsdecode(name)), None)
    assert lost is None
    for p in src.rglob("*"):
        if p.name != os.fsdecode(name) and p.is_file() and not p.is_symlink():
            assert (got / p.relative_to(src)).read_bytes() == p.read_bytes()


def test_failed_file_takes_its_hard_links_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a/b/link-to-f1 (first in tree order: it gets the content) fails half-way (ENOSPC on
    its write); a/f1, linked before or after the failure, must not stay behind as a link
    to the partial file."""
    src = _source(tmp_path / "src")
    st = make_store(tmp_path / "store")
    backup(st, [str(src)], BackupOptions())
    original = restore_write.Restorer._pwrite

    def failing(self: Any, i: int, *rest: Any) -> None:
        if self.items[i].node.name == b"link-to-f1":
            time.sleep(0.05)  # the creator links first, most of the time
            raise OSError(28, "No space left on device")
        original(self, i, *rest)

    monkeypatch.setattr(restore_write.Restorer, "_pwrite", failing)
    res = restore(st, "latest", str(tmp_path / "restore"))
    got = restored_root(tmp_path / "restore", src)
    assert sorted(f.split(": ")[0].rsplit("/", 1)[1] for f in res.failed) == ["f1", "link-to-f1"]
    assert not (got / "a" / "f1").exists() and not (got / "a" / "b" / "link-to-f1").exists()
    assert (got / "a" / "f2").read_bytes() == (src / "a" / "f2").read_bytes()
