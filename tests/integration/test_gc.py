"""gc: deletes what no snapshot uses, repacks partly-dead packs, consolidates the index,
removes unindexed leftovers, refuses to guess on a damaged store (issue #3, item 2)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from casbackup import serde
from casbackup.crypto.codec import LOCK
from casbackup.errors import IntegrityError, Locked
from casbackup.ids import object_name
from casbackup.ops.forget import forget_ids
from casbackup.ops.gc import GcOptions, gc, header_bound
from casbackup.store import Store
from casbackup.store.locks import maintenance_lock
from casbackup.store.store import pack_key
from tests.helpers import index_names, json_result, open_test_store, pack_listing, run_cli
from tests.integration.history import (
    History,
    assert_sound,
    assert_tidy,
    build_history,
    locate_file_blob,
    stored_files,
)


@pytest.fixture
def hist(tmp_path: Path) -> History:
    return build_history(tmp_path)


def _forget_first(h: History, n: int = 1) -> list[str]:
    st = open_test_store(h.store)
    forget_ids(st, h.snapshots[:n])
    st.close()
    return h.snapshots[n:]


def _all_files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and not str(p.relative_to(store)).startswith("locks")}


def test_gc_deletes_repacks_consolidates(hist: History, tmp_path: Path) -> None:
    left = _forget_first(hist)
    before = stored_files(hist.store, "packs")
    assert len(stored_files(hist.store, "index")) >= 3
    st = open_test_store(hist.store)
    rep = gc(st)
    st.close()
    assert rep.packs_deleted >= 1 and rep.packs_repacked >= 1 and rep.packs_written >= 1
    assert rep.index_before >= 3 and rep.index_after == 1
    assert rep.bytes_freed > 0 and rep.bytes_after < rep.bytes_before
    after = stored_files(hist.store, "packs")
    assert len(after) == rep.packs_after
    assert len(before - after) == rep.packs_deleted + rep.packs_repacked
    assert len(after - before) == rep.packs_written
    assert_tidy(hist.store)
    assert_sound(hist, tmp_path, left)
    # a second run finds nothing to do: repacked packs are not repacked again
    st = open_test_store(hist.store)
    again = gc(st)
    st.close()
    assert (again.packs_deleted, again.packs_repacked, again.orphans_deleted) == (0, 0, 0)
    assert again.bytes_freed == 0 and again.index_after == 1


def test_gc_max_unused_100_percent_only_deletes(hist: History, tmp_path: Path) -> None:
    left = _forget_first(hist)
    st = open_test_store(hist.store)
    rep = gc(st, GcOptions(max_unused=1.0))
    st.close()
    assert rep.packs_repacked == 0 and rep.packs_deleted >= 1
    assert_sound(hist, tmp_path, left)


def test_gc_dry_run_writes_nothing_and_predicts(hist: History) -> None:
    _forget_first(hist)
    files = _all_files(hist.store)
    r = run_cli("gc", "--store", str(hist.store), "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    dry = json_result(r.stdout)
    assert dry["dry_run"] is True and dry["freed_bytes"] > 0
    assert _all_files(hist.store) == files
    r = run_cli("gc", "--store", str(hist.store), "--json")
    real = json_result(r.stdout)
    for k in ("packs_deleted", "packs_repacked", "orphans_deleted", "index_after"):
        assert dry[k] == real[k], k
    # the estimate of the repacked bytes is an upper bound within a few header bytes
    assert abs(dry["freed_bytes"] - real["freed_bytes"]) < header_bound(50)


def test_gc_text_output(hist: History) -> None:
    _forget_first(hist)
    r = run_cli("prune", "--store", str(hist.store))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "freed" in out and "kept" in out and "index objects:" in out


def test_gc_forgetting_everything_empties_the_store(hist: History) -> None:
    st = open_test_store(hist.store)
    forget_ids(st, hist.snapshots)
    rep = gc(st)
    st.close()
    assert rep.live_blobs == 0 and rep.packs_after == 0 and rep.bytes_after == 0
    assert stored_files(hist.store, "packs") == set()
    assert stored_files(hist.store, "index") == set()


def _orphan(st: Store) -> str:
    data = os.urandom(5000)
    name = object_name(data)
    st.backend.put(pack_key(name), data)
    return name


def _foreign_lock(st: Store, age: float) -> None:
    data = st.codec.seal(LOCK, serde.pack({
        "exclusive": False, "operation": "backup", "hostname": "elsewhere.example",
        "pid": 4242, "username": "u", "time": time.time() - age, "nonce": os.urandom(8),
    }))
    st.backend.put(f"locks/{object_name(data)}", data)


def test_unindexed_pack_removed_when_no_other_lock(hist: History) -> None:
    st = open_test_store(hist.store)
    name = _orphan(st)
    rep = gc(st)
    assert rep.orphans_deleted == 1 and name not in pack_listing(st)
    st.close()


def _age_locks(store: Path, seconds: float) -> None:
    """Make every lock object look unrefreshed for SECONDS by the backend's clock."""
    for p in (store / "locks").iterdir():
        t = p.stat().st_mtime - seconds
        os.utime(p, (t, t))


def test_unused_packs_of_a_live_foreign_session_wait_for_a_later_gc(hist: History) -> None:
    """Two-phase gc (DESIGN §8, G3): beside a live session (an old-format lock object of
    another host, written just now by the backend's clock however old its own time field)
    an unindexed pack may be a running backup's: kept. Once that session went stale, and
    a pack is older than the epoch of a ripe record, it is condemned and deleted, even
    while a newer session is live; a pack younger than the epoch still waits."""
    st = open_test_store(hist.store)
    _foreign_lock(st, age=3 * 3600)  # the writer's clock is 3 h behind: it is live
    old = _orphan(st)
    rep = gc(st)
    assert rep.orphans_deleted == 0 and rep.orphans_kept == 1 and rep.warnings
    assert old in pack_listing(st) and len(stored_files(hist.store, "gc")) == 2
    _age_locks(hist.store, 3600)  # the first foreign session stops beating
    time.sleep(1.1)  # file mtimes: the next objects are strictly younger than the epoch
    young = _orphan(st)
    _foreign_lock(st, age=0)  # a second, live session, not in the record's waiting set
    rep = gc(st, GcOptions(max_wait=0))
    assert rep.orphans_deleted == 1 and rep.orphans_kept == 1 and rep.packs_condemned == 1
    # condemned, but the live session may have read it: phase 2 waits for it
    assert rep.records_waiting == 1 and "elsewhere.example" in rep.waiting[0]
    assert {old, young} <= pack_listing(st).keys()
    _age_locks(hist.store, 3600)
    rep = gc(st, GcOptions(max_wait=0))
    assert rep.records_done == 2 and rep.packs_removed == 2 and rep.records_waiting == 0
    assert not {old, young} & pack_listing(st).keys()
    assert len(stored_files(hist.store, "gc")) == 2  # only the next run's epoch is left
    st.close()


def test_gc_runs_beside_a_live_foreign_lock_but_not_beside_another_gc(hist: History) -> None:
    st = open_test_store(hist.store)
    _foreign_lock(st, age=0)
    gc(st)  # a backup's lock does not block gc
    with maintenance_lock(st, "gc"), pytest.raises(Locked):
        gc(st)
    st.close()
    with open_test_store(hist.store) as other, maintenance_lock(other, "gc"):
        r = run_cli("gc", "--store", str(hist.store))
    assert r.returncode == 11 and b"locked" in r.stderr


def test_gc_refuses_when_a_tree_is_damaged(hist: History) -> None:
    _forget_first(hist)
    st = open_test_store(hist.store)
    loc = st.locate(st.load_snapshot(hist.snapshots[-1]).tree)  # the latest root tree
    st.close()
    p = hist.store / pack_key(loc.pack)
    b = bytearray(p.read_bytes())
    b[loc.entry.offset + loc.entry.length // 2] ^= 0xFF
    p.write_bytes(bytes(b))
    files = _all_files(hist.store)
    r = run_cli("gc", "--store", str(hist.store))
    assert r.returncode == 13, r.stderr
    assert b"before changing anything" in r.stderr
    assert _all_files(hist.store) == files


def test_gc_refuses_when_a_used_pack_is_missing(hist: History) -> None:
    _forget_first(hist)
    name, _, _, _ = locate_file_blob(hist, "bin/f00")  # in use by every snapshot
    (hist.store / pack_key(name)).unlink()
    files = _all_files(hist.store)
    st = open_test_store(hist.store)
    with pytest.raises(IntegrityError, match="missing but still in use"):
        gc(st)
    st.close()
    assert _all_files(hist.store) == files


def test_snapshot_forgotten_during_mark_is_skipped(hist: History, tmp_path: Path) -> None:
    st = open_test_store(hist.store)
    real = st.snapshot_ids
    st.snapshot_ids = lambda: real() + ["ab" * 32]  # type: ignore[method-assign]
    rep = gc(st)
    st.close()
    assert rep.snapshots == len(hist.snapshots)
    assert_sound(hist, tmp_path, hist.snapshots)


def test_index_names_and_listing_agree_after_gc(hist: History) -> None:
    _forget_first(hist, 2)
    st = open_test_store(hist.store)
    gc(st, GcOptions(max_unused=0.0))
    assert len(index_names(st)) == 1
    st.close()
    assert_tidy(hist.store)
