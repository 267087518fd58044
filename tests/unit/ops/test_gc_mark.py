"""gc's mark (``ops/gc_mark.py`` ``Marker``, over ``gc_sets.BlobSets``) on the one tree
walker: on a real store, the live set is exactly what a recursive oracle finds below
every snapshot, each distinct tree is read once over all snapshots, and an intent naming
a tree in no index is passed over without hiding that tree from a snapshot that names it
(which still stops gc)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casbackup.errors import IntegrityError
from casbackup.model.tree import DIR
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.gc import Marker
from casbackup.ops.gc_sets import BlobSets
from casbackup.ops.observer import Observer
from casbackup.store import Store, blob_table
from casbackup.store.locks import LockInfo
from tests.helpers import make_store


class _Count(Observer):
    def __init__(self) -> None:
        self.trees = 0

    def progress(self, nbytes: int, nfiles: int = 0) -> None:
        self.trees += nfiles  # the marker counts one per tree read


def _oracle(st: Store, tid: bytes, live: set[bytes], trees: set[bytes]) -> None:
    live.add(tid)
    trees.add(tid)
    for n in st.load_tree(tid).nodes:
        live.update(n.content or ())
        if n.type == DIR and n.subtree is not None:
            _oracle(st, n.subtree, live, trees)


def _store(tmp_path: Path) -> tuple[Store, list[bytes]]:
    src = tmp_path / "src"
    for d in ("a", "b", "a/deep/er"):
        (src / d).mkdir(parents=True, exist_ok=True)
    (src / "a" / "one").write_bytes(os.urandom(3000))
    (src / "a" / "deep" / "er" / "two").write_bytes(os.urandom(5000))
    (src / "same").write_bytes(b"same")
    st = make_store(tmp_path / "store")
    roots = [backup(st, [str(src)], BackupOptions()).snapshot.tree]
    (src / "b" / "three").write_bytes(os.urandom(700))  # a (unchanged) is shared
    roots.append(backup(st, [str(src)], BackupOptions()).snapshot.tree)
    return st, roots


def _marker(st: Store, obs: Observer | None = None) -> Marker:
    sets = BlobSets(blob_table(st), (), ())
    return Marker(st, sets, st.index.objects, obs or Observer())


def test_mark_finds_exactly_the_oracles_blobs_reading_each_tree_once(tmp_path: Path) -> None:
    st, roots = _store(tmp_path)
    st.load_index()
    live: set[bytes] = set()
    trees: set[bytes] = set()
    for r in roots:
        _oracle(st, r, live, trees)
    obs = _Count()
    m = _marker(st, obs)
    m.snapshots_now()
    assert m.snapshots == 2 and m.sets.live_ids() == live and m.sets.tree_ids() == trees
    assert not m.missing
    assert obs.trees == len(trees) < sum(1 for _ in roots) * len(trees)  # shared: once
    m.snapshots_now()  # nothing new: nothing read again
    assert obs.trees == len(trees)


def test_an_unreadable_intent_tree_is_passed_over_but_still_stops_a_snapshot(
        tmp_path: Path) -> None:
    st, roots = _store(tmp_path)
    st.load_index()
    m = _marker(st)
    ghost = b"\x07" * 32  # in no index
    lk = LockInfo("l", False, "backup", "h", 1, "u", 0.0, intent=ghost)
    m.intents([lk])
    assert ghost not in m.sets.tree_ids() and ghost not in m.sets.live_ids()
    # an intent whose root is a real tree marks it like a snapshot would
    m.intents([LockInfo("l2", False, "backup", "h", 1, "u", 0.0, intent=roots[0])])
    assert roots[0] in m.sets.live_ids()
    with pytest.raises(IntegrityError, match="is in no index"):
        m._walk(ghost, "snapshot feedbeef")
