"""kill -9 gc at every step of its write/delete order (DESIGN §9.4); afterwards
``verify --read-data`` passes, every remaining snapshot restores exactly, and a rerun of
gc finishes the job with no leftovers (issue #3, item 4)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from casbackup.ids import object_name
from casbackup.ops.forget import forget_ids
from casbackup.store.store import pack_key
from tests.helpers import cli_env, json_result, open_test_store, run_cli
from tests.integration.history import assert_sound, assert_tidy, build_history, stored_files

POINTS = [
    "gc:repack-pack:1",  # a new pack is written, the other is not
    "gc:after-repack",  # all new packs written, no index names them
    "gc:after-record",  # condemnation record written, no waiting set, no new index
    "gc:after-index",  # consolidated index written, old index objects all still there
    "gc:index-delete:1",  # some old index objects deleted
    "gc:index-delete:3",  # all old index objects deleted, no pack deleted
    "gc:pack-delete:1",  # some packs deleted
    "gc:pack-delete:4",  # all obsolete packs deleted, the unindexed one not yet
]


@pytest.mark.parametrize(("point", "encryption"), [(p, "repokey") for p in POINTS] + [
    # unencrypted packs are deterministic: the rerun's repack recreates the very packs
    # the killed run left unindexed, which must then not be deleted as leftovers
    ("gc:after-repack", "none"), ("gc:repack-pack:1", "none")])
def test_gc_killed_then_sound_then_rerun_finishes(tmp_path: Path, point: str,
                                                  encryption: str) -> None:
    h = build_history(tmp_path, encryption=encryption)
    st = open_test_store(h.store)
    forget_ids(st, h.snapshots[:1])
    leftover = os.urandom(3000)  # a crashed backup's unindexed pack
    st.backend.put(pack_key(object_name(leftover)), leftover)
    st.close()
    left = h.snapshots[1:]

    r = run_cli("gc", "--store", str(h.store), env=cli_env(CASBACKUP_TEST_CRASH_AT=point))
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert stored_files(h.store, "locks"), "the killed gc leaves its lock behind"

    # the store is consistent right after the crash
    r = run_cli("verify", "--store", str(h.store), "--read-data", "--json")
    assert r.returncode == 0, r.stdout
    assert json_result(r.stdout)["ok"] is True
    assert_sound(h, tmp_path, left)

    # the dead gc's lock does not block the rerun, which finishes the job
    r = run_cli("gc", "--store", str(h.store), "--json")
    assert r.returncode == 0, r.stderr
    rerun = json_result(r.stdout)
    assert rerun["orphans_kept"] == 0
    assert rerun["packs_after"] == len(stored_files(h.store, "packs"))
    assert_tidy(h.store)
    assert object_name(leftover) not in stored_files(h.store, "packs")
    assert_sound(h, tmp_path, left)
    r = run_cli("gc", "--store", str(h.store), "--json")
    again = json_result(r.stdout)
    assert (again["packs_deleted"], again["packs_repacked"], again["freed_bytes"]) == (0, 0, 0)
