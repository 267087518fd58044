"""The directory cache (ops/dircache.py) never makes a backup skip changed content, and
stores the bits the full comparison with the parent tree stores (issue 17).

Real files in a real store on disk. Every backup's source tree id is checked against the
plain recursive definition (``reference`` of test_fast_paths_equal.py: lstat, chunk, encode,
hash -- no parent, no cache), and every file must read back as its bytes. The clock the
backups run by is ahead of the files' times, so that the racy-entry rule does not keep the
cache from being used; tests of that rule use the real clock.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.clock import Clock
from casbackup.ops import dircache
from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.tree_ahead import TreeAhead
from casbackup.store import Store, init_store
from tests.helpers import FAST_KDF, PASSWORD, source_subtree, write_tree
from tests.integration.test_fast_paths_equal import (
    CHUNKER,
    _check_contents,
    reference,
)


class Ahead(Clock):
    """The real clock, SECONDS ahead."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def time(self) -> float:
        return time.time() + self.seconds


def _store(work: Path) -> Store:
    store = init_store(str(work / "store"), PASSWORD, kdf_n=FAST_KDF, chunker=CHUNKER)
    store.cache_dir = work / "cache"
    return store


class _Spy:
    """Counts the parent trees a backup decodes (to compare a directory's entries with
    their nodes, or to reuse a cached directory's file maps)."""

    def __init__(self, store: Store, mp: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = TreeAhead.maps

        def counted(ahead: TreeAhead, tree_id: bytes) -> list[dict[str, Any]]:
            self.calls += 1
            return real(ahead, tree_id)

        mp.setattr(TreeAhead, "maps", counted)


def _run(store: Store, src: Path, clock: Clock, btype: str = "incremental") -> bytes:
    res = backup(store, [str(src)], BackupOptions(type=btype,
                                                  archive=ArchiveOptions(prefetch=False)),
                 clock=clock)
    return source_subtree(store, res.snapshot.tree, os.fsencode(src))


def _check(store: Store, src: Path, tid: bytes) -> None:
    assert tid == reference(store, os.fsencode(src))
    _check_contents(store, tid, os.fsencode(src))


def _files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())


def _dirs(src: Path) -> list[Path]:
    return sorted([src, *(p for p in src.rglob("*") if p.is_dir() and not p.is_symlink())])


def _same_size_edit(p: Path, n: int) -> None:
    """Other bytes of the same size, the mtime put back: only ctime tells."""
    st = p.stat()
    data = p.read_bytes()
    new = bytes((b + 1 + n) % 256 for b in data) if data else b""
    p.write_bytes(new)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _touch_same(p: Path, n: int) -> None:
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _reuse_inode(p: Path, n: int) -> None:
    """Remove the file and make another of the same name, size and mtime (the inode may
    well be the freed one)."""
    st = p.stat()
    data = p.read_bytes()
    p.unlink()
    p.write_bytes(data[::-1] if len(data) > 1 else b"x" * len(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _rename(p: Path, n: int) -> None:
    p.rename(p.with_name(p.name + f"-r{n}"))


def _append(p: Path, n: int) -> None:
    with p.open("ab") as f:
        f.write(b"more %d\n" % n)


_FILE_MUTATIONS: list[Callable[[Path, int], None]] = [
    _same_size_edit, _touch_same, _reuse_inode, _rename, _append]


def _dir_mutation(kind: int, d: Path, n: int, src: Path) -> None:
    if kind == 0:
        (d / f"new-{n}").write_bytes(b"new file %d\n" % n * (n % 7))
    elif kind == 1 and d != src:
        d.rename(d.with_name(d.name + f"-d{n}"))
    else:
        (d / f"sub-{n}").mkdir()
        (d / f"sub-{n}" / "f").write_bytes(b"%d" % n)


_tree = st.recursive(
    st.dictionaries(st.text("abcde", min_size=1, max_size=4),
                    st.binary(max_size=9000), max_size=5),
    lambda kids: st.dictionaries(st.text("abcde", min_size=1, max_size=4),
                                 st.one_of(st.binary(max_size=9000), kids), max_size=4),
    max_leaves=20,
)


_mutation = st.tuples(st.booleans(), st.integers(0, 10_000), st.integers(0, 4))


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=_tree, rounds=st.lists(st.lists(_mutation, min_size=1, max_size=3),
                                    min_size=1, max_size=3),
       real=st.lists(st.booleans(), min_size=3, max_size=3))
def test_random_mutations_never_skip_changed_content(
        tmp_path: Path, spec: dict[str, object],
        rounds: list[list[tuple[bool, int, int]]], real: list[bool]) -> None:
    """REAL[r]: round r backs up by the real clock (its files racy, no cache records,
    and the next round's comparison with it reads them again) instead of 30 s ahead."""
    work = tmp_path / "w"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    src = work / "src"
    write_tree(src, {"top": spec, "keep": {"k": b"kept"}})
    store = _store(work)
    clock = Ahead(30)  # nothing is racy: the cache is written and used
    _check(store, src, _run(store, src, clock))
    with pytest.MonkeyPatch.context() as mp:
        spy = _Spy(store, mp)
        _check(store, src, _run(store, src, clock))
        assert spy.calls == 0  # unchanged: not one parent tree decoded
    for r, muts in enumerate(rounds):
        for j, (on_file, pick, kind) in enumerate(muts):
            n = 10 * r + j  # a tag no other mutation uses
            files = _files(src)
            if on_file and files:
                _FILE_MUTATIONS[kind](files[pick % len(files)], n)
            else:
                dirs = _dirs(src)
                _dir_mutation(kind % 3, dirs[pick % len(dirs)], n, src)
        _check(store, src, _run(store, src, Clock() if real[r] else clock))


def test_an_edit_deep_down_rebuilds_only_the_directories_above(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                ) -> None:
    src = tmp_path / "src"
    deep = src / "a" / "b" / "c"
    deep.mkdir(parents=True)
    for d in (src, src / "a", src / "a" / "b", deep):
        for i in range(3):
            (d / f"f{i}").write_bytes(b"%s %d\n" % (d.name.encode(), i) * 50)
    (src / "other").mkdir()
    (src / "other" / "x").write_bytes(b"x" * 100)
    store = _store(tmp_path)
    clock = Ahead(30)
    _run(store, src, clock)
    _run(store, src, clock)  # the cache now holds every directory
    _same_size_edit(deep / "f1", 1)  # no directory's listing changes but c's
    spy = _Spy(store, monkeypatch)
    _check(store, src, _run(store, src, clock))
    # c is compared with its parent tree; b, a and src reuse their recorded file maps
    assert spy.calls == 4


def test_racy_entries_are_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       ) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"fresh")
    store = _store(tmp_path)
    real = Clock()  # the files were made within RACY_NS of these backups' start
    _run(store, src, real)
    spy = _Spy(store, monkeypatch)
    _check(store, src, _run(store, src, real))
    assert spy.calls == 2  # both directories compared with their parent trees
    ahead = Ahead(30)
    _run(store, src, ahead)  # the entries are older than 2 s by this clock: recorded
    spy.calls = 0
    _run(store, src, ahead)
    assert spy.calls == 0


def _prepared(tmp_path: Path) -> tuple[Store, Path]:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"content one")
    store = _store(tmp_path)
    _run(store, src, Ahead(100))  # the cache file is written at +100 s
    return store, src


def test_a_clock_set_back_does_not_use_the_cache(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store, src = _prepared(tmp_path)
    _same_size_edit(src / "d" / "f", 3)
    spy = _Spy(store, monkeypatch)
    _check(store, src, _run(store, src, Ahead(30)))  # 70 s earlier than the cache
    assert spy.calls == 2


def test_another_machine_sharing_the_cache_dir_does_not_use_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, src = _prepared(tmp_path)
    monkeypatch.setattr(dircache, "machine_id", lambda: "another-machine")
    spy = _Spy(store, monkeypatch)
    _check(store, src, _run(store, src, Ahead(100)))  # same host name, paths, store
    assert spy.calls == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_cache_file_is_warned_about_and_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    store, src = _prepared(tmp_path)
    [cache_file] = (tmp_path / "cache" / "dirs").iterdir()
    data = bytearray(cache_file.read_bytes())
    if damage == "flip":
        data[-5] ^= 0x40
    elif damage == "truncate":
        del data[len(data) // 2:]
    else:
        data[:] = b"not a cache file"
    cache_file.write_bytes(bytes(data))
    warnings: list[str] = []
    store.on_warning = warnings.append
    spy = _Spy(store, monkeypatch)
    _check(store, src, _run(store, src, Ahead(100)))
    assert spy.calls == 2
    assert any("directory cache" in w and "damaged" in w for w in warnings)
    spy.calls = 0
    _run(store, src, Ahead(100))  # rewritten by the backup that found it damaged
    assert spy.calls == 0


def test_a_blob_missing_from_the_index_is_read_again(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """After repair dropped a damaged blob, the directory is compared with its parent
    tree, whose file's blob is missing: the file is read and the blob stored again."""
    store, src = _prepared(tmp_path)
    blob = store.codec.blob_id(b"content one")
    index = store.load_index()
    assert blob in index
    real_contains = type(index).__contains__
    monkeypatch.setattr(type(index), "__contains__",
                        lambda self, b: b != blob and real_contains(self, b))
    real_many = type(index).contains_many  # (the cache's records are checked in batches)
    monkeypatch.setattr(type(index), "contains_many", lambda self, bs: [
        b != blob and hit for b, hit in zip(bs, real_many(self, bs), strict=True)])
    spy = _Spy(store, monkeypatch)
    res = backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(prefetch=False)),
                 clock=Ahead(100))
    assert spy.calls == 1  # src's record lists no blob: used; d's lists it: compared
    assert res.summary.bytes_read == len(b"content one")
    tid = source_subtree(store, res.snapshot.tree, os.fsencode(src))
    monkeypatch.undo()
    _check(store, src, tid)


def test_deleting_the_cache_changes_no_snapshot(tmp_path: Path) -> None:
    store, src = _prepared(tmp_path)
    clock = Ahead(100)
    with_cache = _run(store, src, clock)
    assert len(list((tmp_path / "cache" / "dirs").iterdir())) == 1
    shutil.rmtree(tmp_path / "cache")
    assert _run(store, src, clock) == with_cache
    store.cache_dir = None
    assert _run(store, src, clock) == with_cache


# ----- the racy-entry rule in the comparison with the parent tree (no cache needed) -----


class _CoarseStat:
    """An lstat as a filesystem with a coarse timestamp tick shows it: a file edited
    within the tick of its last look keeps the times it had then (OVER replaces them)."""

    def __init__(self, st: os.stat_result, **over: int) -> None:
        self._st, self._over = st, over

    def __getattr__(self, name: str) -> Any:
        return self._over[name] if name in self._over else getattr(self._st, name)


@pytest.mark.parametrize("cache", [False, True])
def test_an_edit_within_one_timestamp_tick_is_read(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   cache: bool) -> None:
    """The parent read a file just made; an edit of the same size within the same tick
    keeps its lstat equal to the parent's node. The next backup must store the edit."""
    from casbackup.ops import archiver

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    victim = src / "d" / "f"
    victim.write_bytes(b"first version")
    (src / "d" / "g").write_bytes(b"left alone")
    store = _store(tmp_path)
    if not cache:
        store.cache_dir = None
    real = Clock()  # the files are within RACY_NS of this backup's start
    _run(store, src, real)
    seen = victim.stat()
    _same_size_edit(victim, 1)
    real_lstat_all = archiver._lstat_all

    def coarse(dir_fd: int) -> list[tuple[bytes, Any]]:
        return [(n, _CoarseStat(st, st_ctime_ns=seen.st_ctime_ns)
                 if n == b"f" and not isinstance(st, OSError) else st)
                for n, st in real_lstat_all(dir_fd)]

    monkeypatch.setattr(archiver, "_lstat_all", coarse)
    res = backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(prefetch=False)),
                 clock=real)
    tid = source_subtree(store, res.snapshot.tree, os.fsencode(src))
    _check_contents(store, tid, os.fsencode(src))  # the edit, not the parent's bytes
    assert (res.summary.files_changed, res.summary.files_unchanged) == (1, 1)


def test_racy_files_are_read_again_and_count_as_unchanged(tmp_path: Path) -> None:
    """Files made just before their parent's backup are read by the next one (and count
    as unchanged when their bytes are the same); once the parent is older than their
    times by more than RACY_NS, they are not read."""
    src = tmp_path / "src"
    write_tree(src, {"a": b"one" * 100, "d": {"b": b"two" * 50, "c": b""}})
    store = _store(tmp_path)
    store.cache_dir = None  # the comparison with the parent tree alone
    real = Clock()
    total = 300 + 150
    _check(store, src, _run(store, src, real))
    res = backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(prefetch=False)),
                 clock=real)
    s = res.summary
    assert (s.files_new, s.files_changed, s.files_unchanged, s.bytes_read) == (0, 0, 3, total)
    _check(store, src, source_subtree(store, res.snapshot.tree, os.fsencode(src)))
    _run(store, src, Ahead(30))  # its parent is racy too: read again; it is not
    res = backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(prefetch=False)),
                 clock=Ahead(31))
    s = res.summary
    assert (s.files_new, s.files_changed, s.files_unchanged, s.bytes_read) == (0, 0, 3, 0)
