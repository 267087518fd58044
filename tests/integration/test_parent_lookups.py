"""A backup with a parent asks the index about the parent tree's blobs once per directory
(issue 17), and still re-reads exactly the files whose blobs the index lost.

The archiver compares each entry with its node in the parent snapshot's tree; an entry
equal by lstat reuses the node only when every blob it names is in the index (a
``repair`` may have dropped damaged ones). Those membership checks are batched: when a
parent tree is loaded, every content blob and subtree id it names is asked about in one
``contains_many`` call. These tests pin both halves: the number of index calls of an
unchanged re-backup follows the directories, not the files; a blob dropped from the
index (the store's own ``repair``, real processes) makes the next backup read exactly
the file that named it, and the store then verifies; and for random trees, random
changes and random blobs dropped from the index, a backup from the parent stores the
tree ids of the plain definition (no parent, nothing reused).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.model.tree import DIR, FILE
from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.store import Store, init_store
from casbackup.store.index import StoreIndex
from casbackup.store.store import pack_key
from tests.helpers import (
    FAST_KDF,
    PASSWORD,
    json_result,
    make_store,
    open_test_store,
    run_cli,
    source_subtree,
    write_tree,
)
from tests.integration.test_dircache import Ahead
from tests.integration.test_fast_paths_equal import CHUNKER, _check_contents, _tree, reference


def _many_files(src: Path, dirs: int, files: int) -> None:
    for d in range(dirs):
        sub = src / f"d{d:02d}"
        sub.mkdir(parents=True)
        for f in range(files):
            (sub / f"f{f:03d}").write_bytes(b"dir %d file %d\n" % (d, f) * (f + 1))


class _Counter:
    """Counts the calls of ``StoreIndex.__contains__`` and ``contains_many``."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.one = self.many = 0
        real_in, real_many = StoreIndex.__contains__, StoreIndex.contains_many

        def contains(index: StoreIndex, blob_id: bytes) -> bool:
            self.one += 1
            return real_in(index, blob_id)

        def contains_many(index: StoreIndex, blob_ids: list[bytes]) -> list[bool]:
            self.many += 1
            return real_many(index, blob_ids)

        mp.setattr(StoreIndex, "__contains__", contains)
        mp.setattr(StoreIndex, "contains_many", contains_many)


@pytest.mark.parametrize("files", [20, 200])
def test_an_unchanged_rebackup_asks_the_index_per_directory_not_per_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int) -> None:
    """No directory cache: every directory is compared with its parent tree. The index
    calls of the re-backup are a few per directory, whatever the number of files."""
    dirs = 3
    src = tmp_path / "src"
    _many_files(src, dirs, files)
    make_store(tmp_path / "store").close()
    store = open_test_store(tmp_path / "store")
    store.cache_dir = None  # no directory cache
    opts = BackupOptions(archive=ArchiveOptions(prefetch=False))
    first = backup(store, [str(src)], opts, clock=Ahead(30))
    counter = _Counter(monkeypatch)
    res = backup(store, [str(src)], opts, clock=Ahead(60))
    assert res.summary.files_unchanged == dirs * files and res.summary.bytes_read == 0
    bsrc = os.fsencode(src)
    assert (source_subtree(store, res.snapshot.tree, bsrc)
            == source_subtree(store, first.snapshot.tree, bsrc))
    # the source's own directories, and those above it (tmp_path's components)
    levels = dirs + 1 + len(bsrc.split(b"/"))
    assert counter.one + counter.many <= 3 * levels, (counter.one, counter.many)
    store.close()


def _blob_of(store: Store, snap_tree: bytes, path: Path) -> bytes:
    tid = snap_tree
    parts = [c for c in os.fsencode(path).split(b"/") if c]
    for part in parts[:-1]:
        (m,) = [m for m in store.load_tree_maps(tid) if m["name"] == part]
        tid = m["subtree"]
    (m,) = [m for m in store.load_tree_maps(tid) if m["name"] == parts[-1]]
    (blob,) = m["content"]
    return bytes(blob)


@pytest.mark.parametrize("cache", [True, False], ids=["dircache", "no-cache"])
def test_a_blob_repair_dropped_makes_the_next_backup_read_exactly_its_file(
        tmp_path: Path, cache: bool) -> None:
    """Real processes: a byte of one file's blob flipped in its pack, ``repair`` drops
    that blob from the index (salvaging the others); the next backup reads that file
    alone (every other one is unchanged), and ``verify --read-data`` passes."""
    src = tmp_path / "src"
    _many_files(src, 3, 12)
    victim = src / "d01" / "f007"
    store = tmp_path / "store"
    flags = [] if cache else ["--no-cache"]
    make_store(store).close()
    time.sleep(2.1)  # the files older than RACY_NS at the backup's start: none is racy
    r = run_cli(*flags, "backup", "--store", str(store), str(src), "--json")
    assert r.returncode == 0, r.stderr
    st = open_test_store(store)
    snap = st.load_snapshot(json_result(r.stdout)["snapshot_id"])
    st.load_full_index()
    loc = st.index.lookup(_blob_of(st, snap.tree, victim))
    st.close()
    pack = store / pack_key(loc.pack)
    data = bytearray(pack.read_bytes())
    data[loc.entry.offset + loc.entry.length // 2] ^= 0x20
    pack.write_bytes(bytes(data))

    r = run_cli("repair", "--store", str(store), "--json")
    assert r.returncode == 0, r.stderr
    assert json_result(r.stdout)["lost_blobs"] == 1

    r = run_cli(*flags, "backup", "--store", str(store), str(src), "--json")
    assert r.returncode == 0, r.stderr
    s = json_result(r.stdout)
    assert (s["files_new"], s["files_changed"], s["files_unmodified"]) == (0, 1, 35), s
    assert s["read_bytes"] == victim.stat().st_size
    r = run_cli("verify", "--store", str(store), "--read-data", "--json")
    assert r.returncode == 0, r.stdout


# ----- the property: random trees, random changes, random blobs dropped -----------------

_change = st.sampled_from(["touch", "rewrite", "delete", "add", "drop-blob", "drop-tree"])


def _walk(store: Store, tid: bytes, path: Path, out: list[tuple[Path, dict[str, Any]]]) -> None:
    for m in store.load_tree_maps(tid):
        p = path / os.fsdecode(m["name"])
        out.append((p, m))
        if m["type"] == DIR:
            _walk(store, m["subtree"], p, out)


def _apply(store: Store, src: Path, tid: bytes, changes: list[tuple[str, int]]) -> None:
    nodes: list[tuple[Path, dict[str, Any]]] = []
    _walk(store, tid, src, nodes)
    dirs = [src] + [p for p, m in nodes if m["type"] == DIR]
    for kind, k in changes:
        files = [(p, m) for p, m in nodes if m["type"] == FILE and p.exists()]
        if kind == "add":
            d = dirs[k % len(dirs)]
            if d.exists():
                (d / f"new{k}").write_bytes(b"added %d\n" % k * (k % 700))
        elif kind == "drop-tree":
            subs = [m["subtree"] for _, m in nodes if m["type"] == DIR]
            if subs:
                store.index.blobs.pop(bytes(subs[k % len(subs)]), None)
        elif files:
            p, m = files[k % len(files)]
            if kind == "touch":
                os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 1_000_000_000))
            elif kind == "rewrite":
                p.write_bytes(p.read_bytes() + b"x")
            elif kind == "delete":
                p.unlink()
            elif m["content"]:  # drop-blob: as repair does for a damaged one
                store.index.blobs.pop(bytes(m["content"][k % len(m["content"])]), None)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=_tree, changes=st.lists(st.tuples(_change, st.integers(0, 10_000)), max_size=6))
def test_a_backup_from_the_parent_stores_what_the_plain_path_defines(
        tmp_path: Path, spec: dict[str, object], changes: list[tuple[str, int]]) -> None:
    work = tmp_path / "w"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    src = work / "src"
    write_tree(src, spec)
    store = init_store(str(work / "store"), PASSWORD, kdf_n=FAST_KDF, chunker=CHUNKER)
    bsrc = os.fsencode(src)
    opts = BackupOptions(archive=ArchiveOptions(prefetch=False))
    first = backup(store, [str(src)], opts, clock=Ahead(30))
    _apply(store, src, source_subtree(store, first.snapshot.tree, bsrc), changes)
    want = reference(store, bsrc)
    res = backup(store, [str(src)], opts, clock=Ahead(60))  # the first is its parent
    assert res.snapshot.parent == first.snapshot.id
    got = source_subtree(store, res.snapshot.tree, bsrc)
    assert got == want
    named: list[tuple[Path, dict[str, Any]]] = []
    _walk(store, got, src, named)  # (every tree of it is indexed: load_tree_maps)
    lost = [p for p, m in named if m["type"] == FILE
            and not all(b in store.index for b in m["content"] or ())]
    assert not lost  # a reused node naming a blob the index lacks: data loss
    full = backup(store, [str(src)], BackupOptions(type="full", archive=opts.archive),
                  clock=Ahead(90))
    assert source_subtree(store, full.snapshot.tree, bsrc) == want
    _check_contents(store, want, bsrc)  # every blob it names is indexed and reads back
    assert want in store.index
