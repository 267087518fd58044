"""The one contract every backend keeps (base.py's docstring), run against memory, local,
S3 (moto server on loopback) and SFTP (OpenSSH sshd on loopback)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from casbackup.backends.base import Backend, ObjectInfo, Properties
from casbackup.backends.local import LocalBackend
from casbackup.backends.sftp import SFTPBackend
from casbackup.errors import AlreadyExists, NotFound, PermanentError

BAD_KEYS = ["", "/abs", "a/../b", "..", "A", "a//b", "a/b/", "a/.tmp-x", "a b", "ü", "a/.."]


def _keys(backend: Backend, prefix: str = "") -> list[str]:
    return [i.key for i in backend.list(prefix)]


def _store_dir(backend: Backend) -> Path | None:
    """The directory holding a file-based backend's objects (SFTP runs on this host)."""
    if isinstance(backend, LocalBackend):
        return Path(backend.root)
    if isinstance(backend, SFTPBackend):
        return Path(backend.params.path)
    return None


def _temp_files(backend: Backend) -> list[str]:
    root = _store_dir(backend)
    if root is None or not root.exists():
        return []
    return [str(p) for p in root.rglob(".tmp-*")]


def test_put_get_roundtrip(backend: Backend) -> None:
    backend.put("config", b"hello world")
    assert backend.get("config") == b"hello world"
    info = backend.stat("config")
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size) == ("config", 11)
    assert _keys(backend) == ["config"]


def test_put_accepts_memoryview_and_bytearray(backend: Backend) -> None:
    backend.put("a/mv", memoryview(b"xyz0123")[1:5])
    buf = bytearray(b"mutable")
    backend.put("a/ba", bytes(buf))
    buf[0] = ord("X")
    assert backend.get("a/mv") == b"yz01"
    assert backend.get("a/ba") == b"mutable"


def test_exclusive_put_raises_already_exists(backend: Backend) -> None:
    backend.put("keys/k1", b"first")
    with pytest.raises(AlreadyExists) as info:
        backend.put("keys/k1", b"second")
    assert info.value.key == "keys/k1"
    assert backend.get("keys/k1") == b"first"
    assert _keys(backend) == ["keys/k1"]
    assert _temp_files(backend) == []


def test_overwrite_replaces(backend: Backend) -> None:
    backend.put("locks/l1", b"one")
    backend.put("locks/l1", b"two-longer", overwrite=True)
    assert backend.get("locks/l1") == b"two-longer"
    assert backend.stat("locks/l1").size == 10
    backend.put("locks/new", b"n", overwrite=True)  # overwrite=True also creates
    assert backend.get("locks/new") == b"n"


def test_ranged_get(backend: Backend) -> None:
    data = bytes(range(256)) * 4
    backend.put("packs/00/r", data)
    assert backend.get("packs/00/r", offset=10, length=20) == data[10:30]
    assert backend.get("packs/00/r", offset=1000) == data[1000:]
    assert backend.get("packs/00/r", offset=0, length=1024) == data
    assert backend.get("packs/00/r", offset=1023, length=1) == data[1023:]
    assert backend.get("packs/00/r", offset=5, length=0) == b""
    assert backend.get("packs/00/r", offset=1024) == b""
    for offset, length in [(1020, 10), (1025, None), (2000, 1), (-1, None), (0, -1)]:
        with pytest.raises(PermanentError):
            backend.get("packs/00/r", offset=offset, length=length)


def test_get_into_matches_ranged_get(backend: Backend) -> None:
    """The optional ``get_into`` capability (local, and through the retry wrapper) keeps
    ``get``'s contract: the exact range, PermanentError past the end, NotFound if missing."""
    get_into = getattr(backend, "get_into", None)
    if get_into is None:
        pytest.skip(f"{type(backend).__name__} has no get_into (the store falls back to get)")
    data = os.urandom(3000)
    backend.put("packs/00/gi", data)
    buf = bytearray(b"\xee" * 4000)
    get_into("packs/00/gi", 100, memoryview(buf)[:2900])
    assert bytes(buf[:2900]) == data[100:3000]
    assert buf[2900:] == b"\xee" * 1100  # nothing written past the range
    get_into("packs/00/gi", 3000, memoryview(buf)[:0])
    for offset, n in [(2990, 11), (3001, 0), (-1, 1)]:
        with pytest.raises(PermanentError):
            get_into("packs/00/gi", offset, memoryview(buf)[:n])
    with pytest.raises(NotFound):
        get_into("packs/00/none", 0, memoryview(buf)[:1])


def test_missing_keys_raise_not_found(backend: Backend) -> None:
    for call in (
        lambda: backend.get("snapshots/nope"),
        lambda: backend.get("snapshots/nope", offset=1, length=2),
        lambda: backend.stat("snapshots/nope"),
        lambda: backend.delete("snapshots/nope"),
    ):
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.key == "snapshots/nope"


def test_delete(backend: Backend) -> None:
    backend.put("index/i1", b"x")
    backend.delete("index/i1")
    with pytest.raises(NotFound):
        backend.get("index/i1")
    with pytest.raises(NotFound):
        backend.delete("index/i1")
    assert _keys(backend) == []


def test_directory_is_not_an_object(backend: Backend) -> None:
    backend.put("packs/ab/p1", b"x")
    for key in ("packs", "packs/ab"):
        with pytest.raises(NotFound):
            backend.get(key)
        with pytest.raises(NotFound):
            backend.stat(key)
        with pytest.raises(NotFound):
            backend.delete(key)


def test_list_sorted_with_prefix_and_fanout(backend: Backend) -> None:
    keys = [
        "packs/ab/2",
        "packs/ab/1",
        "packs/ac/1",
        "packs/b0/x",
        "packs-x",
        "index/1",
        "index-old/1",
        "index/2",
        "config",
        "snapshots/s.1",
    ]
    for i, k in enumerate(keys):
        backend.put(k, b"x" * i)
    assert _keys(backend) == sorted(keys)
    assert _keys(backend, "") == sorted(keys)
    assert _keys(backend, "packs/") == ["packs/ab/1", "packs/ab/2", "packs/ac/1", "packs/b0/x"]
    assert _keys(backend, "packs/a") == ["packs/ab/1", "packs/ab/2", "packs/ac/1"]
    assert _keys(backend, "packs/ab/") == ["packs/ab/1", "packs/ab/2"]
    assert _keys(backend, "packs/ab/1") == ["packs/ab/1"]
    assert _keys(backend, "packs") == [
        "packs-x",
        "packs/ab/1",
        "packs/ab/2",
        "packs/ac/1",
        "packs/b0/x",
    ]
    assert _keys(backend, "index") == ["index-old/1", "index/1", "index/2"]
    assert _keys(backend, "nothing/") == []
    assert _keys(backend, "nothing/deeper/") == []
    sizes = {i.key: i.size for i in backend.list()}
    assert sizes == {k: i for i, k in enumerate(keys)}


def test_empty_object(backend: Backend) -> None:
    backend.put("e/empty", b"")
    assert backend.get("e/empty") == b""
    assert backend.get("e/empty", offset=0, length=0) == b""
    assert backend.stat("e/empty").size == 0
    assert [(i.key, i.size) for i in backend.list("e/")] == [("e/empty", 0)]


def test_large_object(backend: Backend) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    backend.put("packs/ff/big", data)
    assert backend.stat("packs/ff/big").size == len(data)
    assert backend.get("packs/ff/big") == data
    assert (
        backend.get("packs/ff/big", offset=3_000_001, length=1_000_003) == data[3_000_001:4_000_004]
    )


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_validated(backend: Backend, key: str) -> None:
    for call in (
        lambda: backend.put(key, b"x"),
        lambda: backend.get(key),
        lambda: backend.stat(key),
        lambda: backend.delete(key),
    ):
        with pytest.raises(PermanentError):
            call()
    assert _keys(backend) == []


def test_concurrent_puts(backend: Backend) -> None:
    keys = [f"packs/{i % 4:02x}/{i:04d}" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: backend.put(k, k.encode() * 100), keys))
    assert _keys(backend) == sorted(keys)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(backend.get, keys))
    assert got == [k.encode() * 100 for k in keys]


def test_concurrent_exclusive_puts_one_winner(backend: Backend) -> None:
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            backend.put("locks/exclusive", f"writer-{i}".encode())
            outcome = f"won-{i}"
        except AlreadyExists:
            outcome = "lost"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("won")]
    if backend.properties().atomic_exclusive_create:
        assert len(winners) == 1, results
        assert backend.get("locks/exclusive") == f"writer-{winners[0][4:]}".encode()
    assert len(results) == 6
    assert _keys(backend) == ["locks/exclusive"]
    assert _temp_files(backend) == []


def test_no_temp_files_after_failed_put(backend: Backend) -> None:
    backend.put("packs/aa/p", b"original")
    for _ in range(3):
        with pytest.raises(AlreadyExists):
            backend.put("packs/aa/p", b"other bytes")
    with pytest.raises(PermanentError):
        backend.put("packs/aa/.tmp-sneaky", b"x")
    assert _keys(backend) == ["packs/aa/p"]
    assert _temp_files(backend) == []
    root = _store_dir(backend)
    if root is not None:
        assert sorted(p.name for p in (root / "packs" / "aa").iterdir()) == ["p"]


@pytest.mark.parametrize("backend_url", ["local", "sftp"], indirect=True)
def test_temp_named_files_are_not_listed(backend: Backend) -> None:
    root = _store_dir(backend)
    assert root is not None
    backend.put("packs/aa/p", b"x")
    (root / "packs" / "aa" / ".tmp-leftover").write_bytes(b"partial")
    (root / ".tmp-top").write_bytes(b"partial")
    assert _keys(backend) == ["packs/aa/p"]


def test_properties(backend: Backend) -> None:
    props = backend.properties()
    assert isinstance(props, Properties)
    assert props.connections >= 1
