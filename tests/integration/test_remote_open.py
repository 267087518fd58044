"""Opening a remote store and its first ``snapshots`` (issue #12 item 1), against the real
moto S3 server on loopback, every GET counted by the wrapper of test_remote_cache:

- a second open reads neither the config nor a key object (one listing of ``keys/``),
  and what it remembers never opens more than a fresh read would: a removed key no
  longer opens the store, a store created anew at the same URL is read afresh;
- a first ``snapshots`` reads the snapshot objects concurrently (bounded), each once,
  and a second reads none;
- an index object is kept once locally: its object-cache copy goes once a compact index
  file holds it, and a later open reads no index object.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import casbackup.store as store_pkg
from casbackup.crypto.codec import DATA
from casbackup.errors import WrongPassword
from casbackup.model.snapshot import Snapshot
from casbackup.store import CacheSettings, open_store
from casbackup.store import store as store_mod
from casbackup.store.keyring import add_key, key_names, remove_key
from tests.helpers import PASSWORD, make_store
from tests.integration.test_remote_cache import CountingBackend, counted


def _open(monkeypatch: pytest.MonkeyPatch, url: str, cache: Path, password: str = PASSWORD,
          wrap: type[CountingBackend] = CountingBackend) -> tuple[Any, list[str]]:
    """A fresh Store (only the cache directory carries anything over) and the keys of
    every GET it made while opening."""
    with counted(monkeypatch, wrap) as opened:
        st = open_store(url, lambda: password, cache=CacheSettings(cache))
    return st, [g[0] for g in opened[0].gets]


def _wipe(url: str) -> None:
    backend = store_pkg.open_backend(url)
    for info in list(backend.list("")):
        backend.delete(info.key)


def test_a_second_open_reads_no_config_and_no_key(s3_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    make_store(s3_url).close()
    st, gets = _open(monkeypatch, s3_url, cache)
    first_id, first_key = st.config.store_id, st.key_name
    st.close()
    assert gets == ["config", f"keys/{first_key}"]
    st, gets = _open(monkeypatch, s3_url, cache)
    assert gets == [] and st.config.store_id == first_id and st.key_name == first_key
    st.close()

    # a passphrase change elsewhere: no remembered key is listed, so the config and the
    # new key are read afresh (once); the old key opens it no more
    other = open_store(s3_url, lambda: PASSWORD, cache=CacheSettings.disabled())
    new_key = add_key(other, "another password", kdf_n=2**10)
    remove_key(other, first_key or "")
    assert key_names(other) == [new_key]
    other.close()
    st, gets = _open(monkeypatch, s3_url, cache, "another password")
    assert gets == ["config", f"keys/{new_key}"] and st.config.store_id == first_id
    st.close()
    st, gets = _open(monkeypatch, s3_url, cache, "another password")
    assert gets == []
    st.close()
    with pytest.raises(WrongPassword):  # its key object is cached, but no longer listed
        _open(monkeypatch, s3_url, cache)

    # a new store at the same URL: its config is read, not the remembered one
    _wipe(s3_url)
    make_store(s3_url).close()
    st, gets = _open(monkeypatch, s3_url, cache)
    assert "config" in gets and st.config.store_id != first_id
    st.close()
    st, gets = _open(monkeypatch, s3_url, cache)
    assert gets == []
    st.close()


class _Gate(CountingBackend):
    """Holds the first READERS snapshot GETs until that many are in flight at once (a
    sequential reader breaks the barrier); records the most in flight."""

    barrier = threading.Barrier(4, timeout=60)
    readers = 4
    in_flight = 0
    most = 0
    mu = threading.Lock()
    held = 0

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        if not key.startswith("snapshots/"):
            return super().get(key, offset=offset, length=length)
        cls = type(self)
        with cls.mu:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
            wait = cls.held < cls.readers
            cls.held += 1
        try:
            if wait:
                cls.barrier.wait()
            return super().get(key, offset=offset, length=length)
        finally:
            with cls.mu:
                cls.in_flight -= 1


def test_a_first_snapshots_reads_them_concurrently_and_once(
        s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    writer = make_store(s3_url)
    for i in range(40):
        writer.save_snapshot(Snapshot(time=1e9 + i, hostname="h", username="u",
                                      paths=[f"/p{i}"], tree=bytes(32)))
    writer.close()
    st, _ = _open(monkeypatch, s3_url, cache, wrap=_Gate)
    gate = st.backend
    assert isinstance(gate, _Gate)
    snaps = st.snapshots()
    st.close()
    assert [s.paths for s in snaps] == [[f"/p{i}"] for i in range(40)]
    reads = [g[0] for g in gate.gets if g[0].startswith("snapshots/")]
    assert len(reads) == len(set(reads)) == 40
    assert 4 <= _Gate.most <= store_mod.SNAPSHOT_READERS
    # the second run: every snapshot from the object cache
    st, _ = _open(monkeypatch, s3_url, cache)
    assert len(st.snapshots()) == 40
    assert not [g for g in st.backend.gets if g[0].startswith("snapshots/")]
    st.close()


def test_an_index_object_is_kept_once_locally(s3_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    make_store(s3_url).close()
    st, _ = _open(monkeypatch, s3_url, cache)
    blob = st.add_blob(DATA, b"kept once " * 100).id
    st.flush()  # its index object: written, and copied into the object cache
    assert st.cache_dir is not None
    copies = st.cache_dir / "objects" / "index"
    assert len(list(copies.iterdir())) == 1
    st.close()
    st, _ = _open(monkeypatch, s3_url, cache)
    st.load_index()  # the compact file is built from the copy; the copy goes
    assert st.has_blob(blob)
    assert list(copies.iterdir()) == []
    assert len(list((st.cache_dir / "compact-index").glob("*.cbx"))) == 1
    assert not [g for g in st.backend.gets if g[0].startswith("index/")]
    st.close()
    st, _ = _open(monkeypatch, s3_url, cache)
    st.load_index()
    assert st.has_blob(blob) and st.backend.gets == []
    st.close()
