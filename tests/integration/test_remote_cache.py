"""The local object cache of a remote store (store/cache.py), against the real moto S3
server and the real sshd: a second ``snapshots``, ``ls``, backup and restore download
only what other writers added since the last run.

The first runs and the other writer are real ``casbackup`` processes; the counted runs
are the real CLI (``cli.app.main``) in this process with every backend GET recorded by a
wrapper around the backend ``open_store`` opens -- each with a fresh Store, so only the
cache directory on disk carries anything from one run to the next.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import casbackup.store as store_pkg
from casbackup.cli.app import main
from casbackup.store import CacheSettings, open_store
from tests.helpers import PASSWORD, assert_same_tree, cli_env, restored_root, run_cli


class CountingBackend:
    """Records the key and range of every GET of an object this run did not write
    itself; everything else passes through."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gets: list[tuple[str, int, int | None]] = []
        self.puts: set[str] = set()
        self._lock = threading.Lock()

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            if key not in self.puts:  # reading back what this run wrote (its own lock)
                self.gets.append((key, offset, length))
        data: bytes = self.inner.get(key, offset=offset, length=length)
        return data

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        with self._lock:
            self.puts.add(key)
        self.inner.put(key, data, overwrite=overwrite)

    def __getattr__(self, name: str) -> Any:
        if name == "get_into":  # every GET goes through get (S3 and SFTP have no get_into)
            raise AttributeError(name)
        return getattr(self.inner, name)


@pytest.fixture(params=["s3", "sftp"])
def remote_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@contextlib.contextmanager
def counted(monkeypatch: pytest.MonkeyPatch, wrap: type[CountingBackend] = CountingBackend
            ) -> Iterator[list[CountingBackend]]:
    """Every backend opened meanwhile, wrapped (by ``wrap``) to count its requests."""
    opened: list[CountingBackend] = []
    real = store_pkg.open_backend

    def wrapped(url: str) -> Any:
        b = wrap(real(url))
        opened.append(b)
        return b

    with monkeypatch.context() as mp:
        mp.setattr(store_pkg, "open_backend", wrapped)
        yield opened


def run_counted(monkeypatch: pytest.MonkeyPatch, cache: Path, *args: str
                ) -> list[tuple[str, int, int | None]]:
    """Run the CLI in this process; every GET it made."""
    monkeypatch.setenv("CASBACKUP_PASSWORD", PASSWORD)
    with counted(monkeypatch) as opened, pytest.raises(SystemExit) as e:
        main([*args, "--cache-dir", str(cache)])
        raise SystemExit(0)
    assert e.value.code == 0, f"{args} exited {e.value.code}"
    return [g for b in opened for g in b.gets]


def cli(url: str, cache: Path, *args: str) -> str:
    p = run_cli(*args, "--store", url, "--cache-dir", str(cache), env=cli_env())
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    return p.stdout.decode()


def store_keys(url: str) -> set[str]:
    with open_store(url, lambda: PASSWORD, cache=CacheSettings.disabled()) as st:
        return {i.key for p in ("index/", "snapshots/", "packs/") for i in st.list_keys(p)}


def tree_ranges(url: str) -> set[tuple[str, int, int]]:
    """(pack key, offset, length) of every tree blob in the store."""
    from casbackup.crypto.codec import TREE
    from casbackup.store.pack import pack_key

    with open_store(url, lambda: PASSWORD, cache=CacheSettings.disabled()) as st:
        out = set()
        for info in st.list_pack_objects():  # the pack headers, not the index
            name = info.key.rsplit("/", 1)[1]
            out.update((pack_key(name), e.offset, e.length)
                       for e in st.pack_entries(name) if e.kind == TREE)
        assert out
        return out


def opening(gets: list[tuple[str, int, int | None]]) -> list[tuple[str, int, int | None]]:
    """The GETs that are not opening the store (config and the key object)."""
    return [g for g in gets if g[0] != "config" and not g[0].startswith("keys/")]


def snapshot_id(out: str) -> str:
    import json

    return str(json.loads(out.strip().splitlines()[-1])["snapshot_id"])


def test_second_runs_fetch_only_what_others_added(remote_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = tmp_path / "cache-ours", tmp_path / "cache-theirs"
    a, b = tmp_path / "a", tmp_path / "b"
    for root, n in ((a, 30), (b, 20)):
        (root / "sub" / "deeper").mkdir(parents=True)
        for i in range(n):
            (root / ("sub/deeper" if i % 3 else "sub") / f"f{i}").write_text(f"{root} {i}\n" * 50)
    cli(remote_url, ours, "init")
    cli(remote_url, ours, "backup", str(a), "--json")
    before = store_keys(remote_url)

    # another host (its own cache) adds a snapshot
    b_snap = snapshot_id(cli(remote_url, theirs, "backup", str(b), "--json"))
    new = store_keys(remote_url) - before
    assert any(k.startswith("index/") for k in new) and f"snapshots/{b_snap}" in new
    trees = tree_ranges(remote_url)

    seen: list[tuple[str, int, int | None]] = []  # every GET of the counted runs

    def run(*args: str) -> list[tuple[str, int, int | None]]:
        gets = opening(run_counted(monkeypatch, ours, *args, "--store", remote_url))
        seen.extend(gets)
        return gets

    # snapshots: the new snapshot object only
    assert [g[0] for g in run("snapshots")] == [f"snapshots/{b_snap}"]
    # ls of the new snapshot: its index object(s) and tree blobs
    gets = run("ls", b_snap)
    objects = [g[0] for g in gets if not g[0].startswith("packs/")]
    assert sorted(objects) == sorted(k for k in new if k.startswith("index/"))
    assert [g for g in gets if g[0].startswith("packs/")], "ls read no tree"
    # a restore of it: the rest of its trees and its data
    target = tmp_path / "restored"
    assert run("restore", b_snap, str(target))
    assert_same_tree(b, restored_root(target, b))

    # everything read was written by the other host, and nothing was read twice
    assert seen and all(g[0] in new for g in seen)
    assert len(set(seen)) == len(seen), "an object or tree blob was downloaded twice"

    # second runs: nothing but opening the store (an unchanged re-backup of a too) ...
    assert run("snapshots") == []
    assert run("ls", b_snap) == []
    assert run("backup", str(a)) == []
    # ... and a second restore reads data blobs only: every tree comes from the cache
    gets = run("restore", b_snap, str(tmp_path / "restored-again"))
    assert gets and all(g[0].startswith("packs/") and g not in trees
                        for g in gets)
    assert_same_tree(b, restored_root(tmp_path / "restored-again", b))


def test_a_damaged_entry_is_refetched(remote_url: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("hello\n")
    cli(remote_url, cache, "init")
    snap = snapshot_id(cli(remote_url, cache, "backup", str(src), "--json"))
    entries = [p for p in cache.rglob("*") if p.is_file()]
    objs = [p for p in entries if "objects" in p.parts]
    trees = [p for p in entries if "trees" in p.parts]
    # the snapshot's copy; its index object is held once, in the compact file the
    # backup built at its close
    assert len(objs) == 1 and trees
    for p in objs + trees:  # flip one byte of every entry
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x40
        p.write_bytes(bytes(data))
    tree_gets = tree_ranges(remote_url)
    gets = opening(run_counted(monkeypatch, cache, "restore", snap, str(tmp_path / "r1"),
                               "--store", remote_url))
    keys = [g[0] for g in gets]
    assert f"snapshots/{snap}" in keys
    assert len([g for g in gets if g in tree_gets]) == len(trees)
    assert_same_tree(src, restored_root(tmp_path / "r1", src))
    # the refetched entries are whole again: a second restore reads data only
    gets = opening(run_counted(monkeypatch, cache, "restore", snap, str(tmp_path / "r2"),
                               "--store", remote_url))
    assert gets and not [g for g in gets if g in tree_gets or not g[0].startswith("packs/")]
    assert_same_tree(src, restored_root(tmp_path / "r2", src))
