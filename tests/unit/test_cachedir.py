"""Where a store's cache lives (store/cachedir.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casbackup.store.cachedir import CacheSettings, store_cache_dir

SID = "0123456789abcdef" * 2


def test_default_follows_casbackup_then_xdg_then_home(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.delenv("CASBACKUP_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert CacheSettings.default().directory == tmp_path / "home" / ".cache" / "casbackup"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: ignore relative
    assert CacheSettings.default().directory == tmp_path / "home" / ".cache" / "casbackup"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert CacheSettings.default().directory == tmp_path / "xdg" / "casbackup"
    monkeypatch.setenv("CASBACKUP_CACHE_DIR", str(tmp_path / "explicit"))
    assert CacheSettings.default().directory == tmp_path / "explicit"


def test_store_dir_is_private_and_named_by_the_store_id(tmp_path: Path) -> None:
    d = store_cache_dir(CacheSettings(tmp_path / "c"), SID)
    assert d == tmp_path / "c" / SID
    assert (os.stat(d).st_mode & 0o777) == 0o700
    assert store_cache_dir(CacheSettings.disabled(), SID) is None
    assert store_cache_dir(None, SID) is None


@pytest.mark.parametrize("bad", ["../../etc", SID[:-1], SID.upper(), "/" + SID[1:], ""])
def test_a_hostile_store_id_cannot_steer_the_cache(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        store_cache_dir(CacheSettings(tmp_path), bad)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_root_means_no_cache_not_a_failure(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    (root / "file").write_text("x")
    # a root below a regular file cannot be created, whoever runs the test (root included)
    assert store_cache_dir(CacheSettings(root / "file" / "sub"), SID) is None
