"""restore creates entries in one thread while packs are fetched and written in others."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from casbackup.ops import restore as restore_mod
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
    original = restore_mod._Restorer._create_one

    def slow(self: Any, it: Any, items: Any) -> None:
        time.sleep(0.005)  # writers get ahead of the creator and must wait
        original(self, it, items)

    monkeypatch.setattr(restore_mod._Restorer, "_create_one", slow)
    target = tmp_path / "restore"
    restore(st, "latest", str(target))
    assert_same_tree(src, restored_root(target, src))


@pytest.mark.parametrize(("method", "name"), [
    ("_create_one", b"big"),  # a multi-blob file: made by the creator thread
    ("_create_write", b"f7"),  # a one-blob file: made by the write that fills it
])
def test_creation_failure_is_raised_not_hung(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, name: bytes
) -> None:
    src = _source(tmp_path / "src")
    st = make_store(tmp_path / "store")
    backup(st, [str(src)], BackupOptions())
    original = getattr(restore_mod._Restorer, method)

    def failing(self: Any, it: Any, *rest: Any) -> None:
        if it.node.name == name:
            raise OSError(28, "No space left on device")
        original(self, it, *rest)

    monkeypatch.setattr(restore_mod._Restorer, method, failing)
    with pytest.raises(OSError, match="No space left"):
        restore(st, "latest", str(tmp_path / "restore"))
