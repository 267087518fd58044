"""The backup's directory cache (ops/dircache.py) under attack, with real processes:

- ``kill -9`` between writing a cache file's temporary copy and renaming it into place:
  the next backups are right (tree ids equal the plain definition), the leftover is kept
  while it is fresh (it could be another backup's write in progress) and removed by a
  later write once an hour old; a half-written (truncated) cache file is warned about and
  never trusted.
- Names that are not UTF-8 inside the cache's records: a backup, a rename of a file and of
  a directory to latin-1 names, re-backups; every tree id equals the plain definition and
  the records hold the names byte for byte.

Every check compares the snapshot's source tree with ``reference`` (lstat, chunk, encode,
hash; no parent, no cache) of test_fast_paths_equal.py. The sources are left to settle
past the racy-entry window (2 s) before a backup whose cache must be used, so the cache is
written and read, not skipped.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import msgpack

from casbackup.ops import dircache
from tests.helpers import cli_env, make_store, open_test_store, run_cli, source_subtree
from tests.integration.test_fast_paths_equal import reference


def _settle(src: Path) -> None:
    """Wait until no entry of SRC is racy for a backup starting now (dircache.RACY_NS)."""
    newest = max(max(os.lstat(os.path.join(d, n)).st_ctime_ns
                     for n in [b".", *names]) for d, _, names in os.walk(os.fsencode(src)))
    while time.time_ns() < newest + dircache.RACY_NS + 100_000_000:
        time.sleep(0.05)


def _backup(work: Path, src: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    return run_cli("backup", "--store", str(work / "store"), "--cache-dir",
                   str(work / "cache"), str(src), env=cli_env(**env))


def _check_latest(work: Path, src: Path) -> None:
    """The newest snapshot's tree of SRC is the plain definition's."""
    store = open_test_store(work / "store")
    try:
        snap = max(store.snapshots(), key=lambda s: s.time)
        got = source_subtree(store, snap.tree, os.fsencode(src))
        assert got == reference(store, os.fsencode(src))
    finally:
        store.close()


def _cache_files(work: Path) -> list[Path]:
    return sorted((work / "cache").glob("*/dirs/*"))


def _records(path: Path) -> list[list[object]]:
    body = path.read_bytes()[len(dircache._MAGIC) + dircache._SUM:]
    rows: list[list[object]] = msgpack.unpackb(body, raw=False)[3]
    return rows


def _source(work: Path) -> Path:
    src = work / "src"
    for d in ("a", "b/c"):
        (src / d).mkdir(parents=True)
    for i, d in enumerate(("a", "b", "b/c")):
        (src / d / "f").write_bytes(os.urandom(3000 + i))
    make_store(work / "store").close()
    return src


def test_kill_9_during_a_cache_write_leaves_no_trusted_half(tmp_path: Path) -> None:
    src = _source(tmp_path)
    _settle(src)
    r = _backup(tmp_path, src)
    assert r.returncode == 0, r.stderr
    [cache] = _cache_files(tmp_path)
    before = cache.read_bytes()

    (src / "a" / "f").write_bytes(b"changed")
    _settle(src)
    r = _backup(tmp_path, src, CASBACKUP_TEST_CRASH_AT="dircache:before-rename")
    assert r.returncode == -9, r.stderr
    [leftover] = [p for p in _cache_files(tmp_path) if p.name.endswith(".tmp")]
    assert cache.read_bytes() == before  # the old file is whole; the new one never landed
    _check_latest(tmp_path, src)  # the crashed backup's snapshot (written before its cache)

    (src / "b" / "c" / "f").write_bytes(b"changed too")
    _settle(src)
    r = _backup(tmp_path, src)
    assert r.returncode == 0, r.stderr
    _check_latest(tmp_path, src)
    assert leftover.exists()  # fresh: it could be another backup's write in progress

    hour_ago = time.time() - 2 * dircache._TEMP_AGE
    os.utime(leftover, (hour_ago, hour_ago))
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # a half-written file
    (src / "a" / "f").write_bytes(b"changed again")
    _settle(src)
    r = _backup(tmp_path, src)
    assert r.returncode == 0, r.stderr
    assert b"directory cache" in r.stderr and b"damaged" in r.stderr
    _check_latest(tmp_path, src)
    assert _cache_files(tmp_path) == [cache]  # the crash's leftover is swept
    assert _records(cache)  # and the file is whole again

    _settle(src)
    r = _backup(tmp_path, src)  # unchanged: the rewritten cache is used
    assert r.returncode == 0 and b"damaged" not in r.stderr, r.stderr
    _check_latest(tmp_path, src)


def test_latin1_names_in_cache_records(tmp_path: Path) -> None:
    src = _source(tmp_path)
    latin = os.fsencode(src) + b"/caf\xe9"  # not UTF-8
    os.mkdir(latin)
    with open(latin + b"/na\xefve", "wb") as f:
        f.write(os.urandom(5000))
    _settle(src)
    for _ in range(2):  # the first writes the records, the second uses them
        r = _backup(tmp_path, src)
        assert r.returncode == 0, r.stderr
        _check_latest(tmp_path, src)
    [cache] = _cache_files(tmp_path)
    subdirs = {bytes(n) for row in _records(cache) for n, _ in row[3]}  # type: ignore[misc]
    assert b"caf\xe9" in subdirs

    os.rename(os.fsencode(src) + b"/a/f", os.fsencode(src) + b"/a/\xe9t\xe9")
    os.rename(latin, os.fsencode(src) + b"/b/\xc7a")  # a latin-1 directory moves and renames
    r = _backup(tmp_path, src)
    assert r.returncode == 0, r.stderr
    _check_latest(tmp_path, src)
    _settle(src)
    for _ in range(2):
        r = _backup(tmp_path, src)
        assert r.returncode == 0, r.stderr
        _check_latest(tmp_path, src)
    subdirs = {bytes(n) for row in _records(cache) for n, _ in row[3]}  # type: ignore[misc]
    assert b"\xc7a" in subdirs and b"caf\xe9" not in subdirs
