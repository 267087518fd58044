"""A gc with nothing to free writes no index (wave 8, issue #12 item 5 / #17 item 3): the
index objects stay as they are -- gc used to rewrite the whole index on every run once
it had more than one object, and its own output is split into objects of 200k entries,
so at 1M blobs an idle gc rewrote 1M entries each time -- unless more small objects
pile up than the backups' consolidation rule allows, which gc then merges the same way
(one exact object). The store stays sound either way."""

from __future__ import annotations

import os
from pathlib import Path

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.gc import gc
from casbackup.ops.verify import verify
from casbackup.store.consolidate import MIN_OBJECTS
from tests.helpers import index_names, make_store, open_test_store
from tests.integration.history import stored_files


def _backups(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    path = tmp_path / "store"
    st = make_store(path)
    for i in range(n):
        (src / f"f{i}").write_bytes(os.urandom(2000 + i))
        backup(st, [str(src)], BackupOptions())
    st.close()
    return path


def test_gc_with_nothing_to_free_leaves_the_index_objects(tmp_path: Path) -> None:
    path = _backups(tmp_path, 3)
    before, packs = stored_files(path, "index"), stored_files(path, "packs")
    assert len(before) == 3
    st = open_test_store(path)
    rep = gc(st)
    assert (rep.packs_deleted, rep.packs_repacked, rep.orphans_deleted) == (0, 0, 0)
    assert rep.index_before == rep.index_after == 3
    assert stored_files(path, "index") == before  # nothing written, nothing deleted
    assert stored_files(path, "packs") == packs
    assert verify(st, read_data=True).ok
    st.close()


def test_gc_with_nothing_to_free_merges_small_objects_past_the_backup_rule(
        tmp_path: Path) -> None:
    path = _backups(tmp_path, 1)
    st = open_test_store(path)
    p = next(iter(st.load_full_index().packs.values()))
    for _ in range(MIN_OBJECTS + 1):  # more small objects than a backup leaves
        st.write_index([p])
    st.close()
    packs = stored_files(path, "packs")
    assert len(stored_files(path, "index")) == MIN_OBJECTS + 2
    st = open_test_store(path)
    rep = gc(st)
    assert rep.index_after == 1 == len(index_names(st))
    assert stored_files(path, "packs") == packs
    assert verify(st, read_data=True).ok
    st.close()
