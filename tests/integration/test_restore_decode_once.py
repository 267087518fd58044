"""restore decodes and validates each tree once (``ops/restore_plan.Plan``).

The checking walk validates every tree of the selection and keeps the first ones it
decoded, within ``tree_keep`` bytes of estimated size; the writing walk takes those out
and decodes the others again with ``Tree.decode_again`` (no second validation). Real
stores on disk, counted calls:

- every tree is validated exactly once per restore, whatever the budget; with room for
  all of them none is decoded a second time; with none, each is decoded again once; in
  between the kept trees are a prefix of the walk within the budget, none left after the
  writes; and the restored tree is the source exactly in every case.
- a tree met several times in a walk (empty directories: one id) is restored at every
  place, validated once when kept.
- a tree whose stored bytes change between the two walks (a hostile store swapping a
  blob after the check) is still refused by the store's id check when the writing walk
  fetches it again: ``decode_again`` never sees bytes that were not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from casbackup.errors import IntegrityError
from casbackup.model.tree import Tree
from casbackup.ops import restore as restore_mod
from casbackup.ops import restore_plan
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.store import Store
from tests.helpers import (
    assert_same_tree,
    make_store,
    open_test_store,
    restored_root,
    tree_state,
)

DIRS, FILES = 12, 30


def _source(root: Path) -> None:
    for d in range(DIRS):
        sub = root / f"d{d:02d}"
        sub.mkdir(parents=True)
        for f in range(FILES):
            (sub / f"f{f:03d}").write_bytes(b"%d/%d " % (d, f) * (f + 1))


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    src = tmp_path / "src"
    _source(src)
    st = make_store(tmp_path / "store")
    backup(st, [str(src)], BackupOptions())
    st.close()
    yield src, tmp_path / "store"


class _Count:
    """Calls of Tree.decode and Tree.decode_again, and the trees the plan kept."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decode: list[bytes | None] = []
        self.again = 0
        self.kept_after_check: int | None = None
        plain, again = Tree.decode.__func__, Tree.decode_again.__func__  # type: ignore[attr-defined]

        def decode(cls: type[Tree], data: Any, tree_id: bytes | None = None) -> Tree:
            self.decode.append(tree_id)
            return plain(cls, data, tree_id)  # type: ignore[no-any-return]

        def decode_again(cls: type[Tree], data: Any) -> Tree:
            self.again += 1
            return again(cls, data)  # type: ignore[no-any-return]

        monkeypatch.setattr(Tree, "decode", classmethod(decode))
        monkeypatch.setattr(Tree, "decode_again", classmethod(decode_again))
        check = restore_mod.check

        def counted_check(store: Store, plan: restore_plan.Plan,
                          items: Any = None) -> tuple[int, int]:
            out = check(store, plan, items)
            self.kept_after_check = plan.kept
            self.plan = plan
            return out

        monkeypatch.setattr(restore_mod, "check", counted_check)


def _tree_count(store: Path) -> int:
    st = open_test_store(store)
    try:
        todo, n = [st.snapshots()[-1].tree], 0
        while todo:
            tid = todo.pop()
            n += 1
            todo += [x.subtree for x in st.load_tree(tid).nodes if x.subtree is not None]
        return n
    finally:
        st.close()


@pytest.mark.parametrize("keep", [0, 6000, restore_plan.KEEP_BYTES])
def test_each_tree_is_validated_once(stored: tuple[Path, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, keep: int) -> None:
    src, store = stored
    trees = _tree_count(store)
    st = open_test_store(store)
    count = _Count(monkeypatch)
    out = tmp_path / "out"
    res = restore(st, "latest", str(out), window_entries=7, tree_keep=keep)
    st.close()
    assert not res.failed and res.files == DIRS * FILES
    assert_same_tree(src, restored_root(out, src))
    assert len(count.decode) == trees  # each tree validated once, in the checking walk
    assert len(set(count.decode)) == trees
    kept = count.kept_after_check
    assert kept is not None
    assert count.again == trees - kept  # the others decoded once more, unvalidated
    assert count.plan.kept == 0  # the writing walk took every kept tree out
    if keep == 0:
        assert kept == 0
    elif keep == restore_plan.KEEP_BYTES:
        assert kept == trees
    else:  # some, not all: the budget is what bounds them
        assert 0 < kept < trees


def test_kept_trees_fit_their_budget(stored: tuple[Path, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, store = stored
    st = open_test_store(store)
    try:
        sizes: dict[bytes, int] = {}
        fetch = st.tree_blob

        def sized(tid: bytes) -> bytes:
            data = fetch(tid)
            sizes[tid] = len(data)
            return data

        monkeypatch.setattr(st, "tree_blob", sized)
        for keep in (1, 3000, 6000, 20000):
            plan = restore_mod.plan_of(st, st.snapshots()[-1], None, 0, [], [], keep)
            first = list(plan.entries())
            held = list(plan._kept)  # what the budget bounds
            assert sum(restore_plan.KEEP_FACTOR * sizes[t] for t in held) <= keep
            # a prefix of the walk (the root first): the first trees the writes reach
            walk = [st.snapshots()[-1].tree,
                    *(it.node.subtree for it in first if it.node.subtree is not None)]
            assert held == walk[:len(held)]
            assert list(plan.entries()) == first and plan.kept == 0  # the same entries
    finally:
        st.close()


def test_a_tree_swapped_after_the_check_is_refused_when_fetched_again(
        stored: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, store = stored
    st = open_test_store(store)
    last = [n for n in st.load_tree(_deepest(st)).nodes if n.subtree is not None][-1]
    assert last.subtree is not None
    loc = st.locate(last.subtree)  # the last directory's tree: not kept (budget 0)
    pack = next(store.rglob(loc.pack + "*"))
    check = restore_mod.check

    def check_then_swap(s: Store, plan: restore_plan.Plan,
                        items: Any = None) -> tuple[int, int]:
        out = check(s, plan, items)
        data = bytearray(pack.read_bytes())
        data[loc.entry.offset + loc.entry.length // 2] ^= 0x01
        pack.chmod(0o644)
        pack.write_bytes(bytes(data))
        return out

    monkeypatch.setattr(restore_mod, "check", check_then_swap)
    with pytest.raises(IntegrityError):
        restore(st, "latest", str(tmp_path / "out"), window_entries=7, tree_keep=0)
    st.close()
    assert not (restored_root(tmp_path / "out", src) / last.name.decode()).exists()


def _deepest(st: Store) -> bytes:
    """The tree holding the source's d* directories."""
    tid = st.snapshots()[-1].tree
    while True:
        subs = [n for n in st.load_tree(tid).nodes if n.subtree is not None]
        if len(subs) == DIRS:
            return tid
        assert len(subs) == 1 and subs[0].subtree is not None
        tid = subs[0].subtree



@pytest.mark.parametrize("keep", [0, restore_plan.KEEP_BYTES])
def test_a_tree_met_several_times_is_restored_everywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: int) -> None:
    """Empty directories are one tree id (a real directory's nodes differ by inode and
    ctime), met three times per walk: kept, it is validated once and taken out at its
    first place, decoded again at the others; not kept, each walk decodes it each time."""
    src = tmp_path / "src"
    for d in ("a", "b", "c/a"):
        (src / d).mkdir(parents=True)
    for f in range(20):
        (src / "c" / f"f{f:02d}").write_bytes(b"%d " % f * 30)
    st = make_store(tmp_path / "store")
    backup(st, [str(src)], BackupOptions())
    count = _Count(monkeypatch)
    out = tmp_path / "out"
    res = restore(st, "latest", str(out), window_entries=3, tree_keep=keep)
    st.close()
    assert not res.failed and res.files == 20
    assert_same_tree(src, restored_root(out, src))
    empty = max(set(count.decode), key=count.decode.count)
    if keep:
        assert count.decode.count(empty) == 1 and count.again == 2
    else:
        assert count.decode.count(empty) == 3 and count.again == len(count.decode)
    assert count.plan.kept == 0


@pytest.mark.parametrize("how", ["delete", "dry-run"])
def test_one_window_restore_walks_the_trees_once(
        stored: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        how: str) -> None:
    """``--delete`` and ``--dry-run`` list the whole selection as one window: that list
    is the checking walk, so no tree is fetched or decoded a second time (and none is
    kept for a walk that never comes)."""
    src, store = stored
    trees = _tree_count(store)
    st = open_test_store(store)
    out = tmp_path / "out"
    restore(st, "latest", str(out))  # a full restore, then in place over it
    (restored_root(out, src) / "d03" / "f007").write_bytes(b"changed")
    (restored_root(out, src) / "d04" / "extra").write_bytes(b"not in the snapshot")
    count = _Count(monkeypatch)
    fetched: list[bytes] = []
    tree_blob = st.tree_blob

    def counted_fetch(tid: bytes) -> bytes:
        fetched.append(tid)
        return tree_blob(tid)

    monkeypatch.setattr(st, "tree_blob", counted_fetch)
    res = restore(st, "latest", str(out), overwrite="if-changed",
                  delete=how == "delete", dry_run=how == "dry-run")
    st.close()
    assert not res.failed
    assert len(count.decode) == trees and count.again == 0
    assert len(fetched) == trees  # each tree read from the store once
    assert count.kept_after_check == 0
    if how == "delete":
        assert_same_tree(src, restored_root(out, src))
    else:
        assert (restored_root(out, src) / "d04" / "extra").exists()


def test_one_window_restore_over_a_damaged_tree_changes_nothing(
        stored: tuple[Path, Path], tmp_path: Path) -> None:
    """With ``--delete`` the listing walk is the checking walk: a tree that fails to
    decode (its last directory's, met last) stops the restore before the survey or any
    write -- the changed file stays changed, the extra one is not deleted."""
    src, store = stored
    st = open_test_store(store)
    out = tmp_path / "out"
    restore(st, "latest", str(out))
    root = restored_root(out, src)
    (root / "d03" / "f007").write_bytes(b"changed")
    (root / "d04" / "extra").write_bytes(b"not in the snapshot")
    last = [n for n in st.load_tree(_deepest(st)).nodes if n.subtree is not None][-1]
    assert last.subtree is not None
    loc = st.locate(last.subtree)
    st.close()
    pack = next(store.rglob(loc.pack + "*"))
    data = bytearray(pack.read_bytes())
    data[loc.entry.offset + loc.entry.length // 2] ^= 0x01
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    before = tree_state(out)
    st = open_test_store(store)
    with pytest.raises(IntegrityError):
        restore(st, "latest", str(out), overwrite="if-changed", delete=True)
    st.close()
    assert tree_state(out) == before
