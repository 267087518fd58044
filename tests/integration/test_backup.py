"""Backup semantics: types and parents, unchanged files not read, excludes, stdin,
dry run, and files that change while they are read (issue #2, items 3 and 8)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from casbackup.ops import file_saver as saver_mod
from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.observer import Observer
from casbackup.ops.restore import restore
from casbackup.source.exclude import Excluder
from casbackup.store import Store
from tests.helpers import make_store, restored_root, source_subtree
from tests.integration.test_dircache import Ahead


@pytest.fixture
def src(tmp_path: Path) -> Path:
    s = tmp_path / "src"
    (s / "d1").mkdir(parents=True)
    (s / "d2").mkdir()
    for i in range(20):
        (s / "d1" / f"f{i}").write_bytes(os.urandom(5000 + i))
    (s / "d2" / "big").write_bytes(os.urandom(3 << 20))
    return s


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "store")


def test_incremental_does_not_read_unchanged_files(store: Store, src: Path) -> None:
    # the backups' clock 30 s ahead: SRC's files, just made, are not racy by it (a file
    # within 2 s of its parent's start is read again: test_dircache.py)
    ahead = Ahead(30)
    first = backup(store, [str(src)], BackupOptions(), clock=ahead)
    assert first.summary.files_new == 21 and first.snapshot.parent is None
    second = backup(store, [str(src)], BackupOptions(), clock=ahead)
    s = second.summary
    assert (s.files_new, s.files_changed, s.files_unchanged) == (0, 0, 21)
    assert s.bytes_read == 0
    assert second.snapshot.parent == first.snapshot.id
    assert second.snapshot.type == "incremental"
    # one changed file is the only one read
    (src / "d1" / "f3").write_bytes(b"changed")
    third = backup(store, [str(src)], BackupOptions(type="snapshot"))
    assert third.summary.files_changed == 1 and third.summary.bytes_read == len(b"changed")
    assert third.snapshot.type == "snapshot"


def test_full_reads_everything_and_adds_nothing_new(store: Store, src: Path) -> None:
    backup(store, [str(src)], BackupOptions())
    full = backup(store, [str(src)], BackupOptions(type="full"))
    assert full.snapshot.parent is None and full.snapshot.type == "full"
    assert full.summary.bytes_read == full.summary.total_size > 3 << 20
    assert full.summary.bytes_added < 4096  # dedup: only a tree or two are new


def test_differential_parent_is_latest_full(store: Store, src: Path) -> None:
    full = backup(store, [str(src)], BackupOptions(type="full"))
    (src / "d1" / "f1").write_bytes(b"one")
    backup(store, [str(src)], BackupOptions(type="incremental"))
    (src / "d1" / "f2").write_bytes(b"two")
    diff = backup(store, [str(src)], BackupOptions(type="differential"))
    assert diff.snapshot.parent == full.snapshot.id
    assert diff.snapshot.type == "differential"
    assert diff.summary.files_changed == 2  # both changes since the full, not since the incr


def test_unknown_type_is_refused(store: Store, src: Path) -> None:
    from casbackup.errors import UsageError

    with pytest.raises(UsageError):
        backup(store, [str(src)], BackupOptions(type="weekly"))


def test_excludes_patterns_files_and_caches(store: Store, src: Path, tmp_path: Path) -> None:
    (src / "d1" / "skip.log").write_text("log")
    (src / "cache").mkdir()
    (src / "cache" / "CACHEDIR.TAG").write_bytes(
        b"Signature: 8a477f597d28d172789f06886806bc55\n")
    (src / "cache" / "blob").write_text("cached")
    exfile = tmp_path / "excludes"
    exfile.write_text("# comment\nd2/\n")
    ex = Excluder.from_options(["*.log"], [str(exfile)], exclude_caches=True)
    backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(excluder=ex)))
    out = tmp_path / "out"
    restore(store, "latest", str(out))
    root = restored_root(out, src)
    assert sorted(os.listdir(root)) == ["cache", "d1"]
    assert os.listdir(root / "cache") == []  # the cache dir is kept, its content is not
    assert "skip.log" not in os.listdir(root / "d1")
    assert len(os.listdir(root / "d1")) == 20


def test_stdin_backup_roundtrip(store: Store, tmp_path: Path) -> None:
    data = os.urandom(2 << 20) + b"tail"
    res = backup(store, [], BackupOptions(stdin=io.BytesIO(data), stdin_filename="db.dump"))
    assert res.snapshot.paths == ["/db.dump"]
    out = tmp_path / "out"
    restore(store, "latest", str(out))
    assert (out / "db.dump").read_bytes() == data


def test_dry_run_writes_nothing(store: Store, src: Path, tmp_path: Path) -> None:
    def objects() -> list[str]:
        return sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file())

    before = objects()
    res = backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(dry_run=True)))
    assert not res.saved
    assert res.summary.bytes_added >= 3 << 20
    assert objects() == before  # no pack, index or snapshot (the lock came and went)


def test_tags_are_recorded(store: Store, src: Path) -> None:
    res = backup(store, [str(src)], BackupOptions(tags=["b", "a", "a"]))
    assert store.load_snapshot(res.snapshot.id).tags == ["a", "b"]


class _Warnings(Observer):
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def warn(self, path: str, message: str) -> None:
        self.items.append((path, message))


def test_file_changing_once_while_read_is_reread(
    store: Store, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = src / "d2" / "big"
    real = saver_mod.FileSaver._read_once
    calls = {"n": 0}

    def racing(self: saver_mod.FileSaver, fd: int, size: int) -> tuple[list[bytes], int]:
        out = real(self, fd, size)
        if os.fstat(fd).st_ino == target.stat().st_ino and calls["n"] == 0:
            calls["n"] += 1
            with open(target, "ab") as f:  # a writer appends while we read
                f.write(b"appended during read")
        return out

    monkeypatch.setattr(saver_mod.FileSaver, "_read_once", racing)
    obs = _Warnings()
    res = backup(store, [str(src)], BackupOptions(), obs)
    assert res.summary.changed_during_read == 0 and obs.items == []
    _restores_as_stored(store, res.snapshot.id, src, tmp_path, target.read_bytes())


def _restores_as_stored(store: Store, sid: str, src: Path, tmp_path: Path,
                        stored: bytes) -> None:
    """Snapshot SID records SRC/d2/big with the size of what was stored (not the
    walker's lstat's, taken before it grew), and restores it exactly, warning of
    nothing."""
    snap = store.load_snapshot(sid)
    d2 = source_subtree(store, snap.tree, src / "d2")
    (node,) = [m for m in store.load_tree_maps(d2) if m["name"] == b"big"]
    assert node["size"] == len(stored)
    out = tmp_path / "out"
    r = restore(store, sid, str(out))
    assert r.warnings == []
    assert (restored_root(out, src) / "d2" / "big").read_bytes() == stored


def test_file_that_keeps_changing_is_flagged_not_silent(
    store: Store, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = src / "d2" / "big"
    real = saver_mod.FileSaver._read_once

    def racing(self: saver_mod.FileSaver, fd: int, size: int) -> tuple[list[bytes], int]:
        out = real(self, fd, size)
        if os.fstat(fd).st_ino == target.stat().st_ino:
            with open(target, "ab") as f:
                f.write(b"x")
        return out

    monkeypatch.setattr(saver_mod.FileSaver, "_read_once", racing)
    obs = _Warnings()
    res = backup(store, [str(src)], BackupOptions(), obs)
    assert res.summary.changed_during_read == 1
    assert any(p.endswith("big") and "changed while" in m for p, m in obs.items)
    # stored as last read: the file then had one byte less than it has now
    _restores_as_stored(store, res.snapshot.id, src, tmp_path, target.read_bytes()[:-1])


def test_one_file_system_keeps_mount_point_but_not_its_content(
    store: Store, src: Path, tmp_path: Path
) -> None:
    import subprocess

    mnt = src / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "cbtest", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs permission to mount a tmpfs")
    try:
        (mnt / "other-fs.txt").write_text("on another filesystem")
        backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(one_file_system=True)))
        out = tmp_path / "out"
        restore(store, "latest", str(out))
        root = restored_root(out, src)
        assert (root / "mnt").is_dir() and os.listdir(root / "mnt") == []
        assert len(os.listdir(root / "d1")) == 20
        backup(store, [str(src)], BackupOptions(type="full"))
        out2 = tmp_path / "out2"
        restore(store, "latest", str(out2))
        assert (restored_root(out2, src) / "mnt" / "other-fs.txt").read_text() == (
            "on another filesystem")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _blob_ids(store: Store) -> set[bytes]:
    return {e.id for p in store.load_index().iter_packs() for e in p.entries}


def test_small_file_thread_gives_the_same_tree_and_blobs_as_one_pool(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # many small files (one blob each) beside files the chunker cuts: the tree and the
    # blobs do not depend on which thread saved a file
    s = tmp_path / "mixed"
    for d in range(4):
        (s / f"d{d}").mkdir(parents=True)
        for i in range(150):
            (s / f"d{d}" / f"f{i}").write_bytes(os.urandom(10 + 37 * i))
        (s / f"d{d}" / "big").write_bytes(os.urandom((1 << 20) + d))
    first = backup(store, [str(s)], BackupOptions(type="full"))
    store.flush()
    blobs_after_first = _blob_ids(store)

    def one_pool(self: saver_mod.FileSaver, batch: list) -> object:  # type: ignore[type-arg]
        self._slots.acquire()
        return self._pool.submit(self._save_batch, batch)  # main's routing: one pool

    monkeypatch.setattr(saver_mod.FileSaver, "submit", one_pool)
    again = backup(store, [str(s)], BackupOptions(type="full"))
    assert again.summary.files_new == first.summary.files_new == 604
    assert (source_subtree(store, again.snapshot.tree, s)
            == source_subtree(store, first.snapshot.tree, s))
    assert again.summary.blobs_added == 0
    assert _blob_ids(store) == blobs_after_first
