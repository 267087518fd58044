"""A small store with a history that leaves every kind of garbage for gc: packs whose
blobs all die (deleted files), packs that are partly dead (to repack), several index
objects and tree packs; plus helpers that prove a store sound after maintenance."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.ops.verify import verify
from tests.helpers import (
    index_names,
    make_store,
    open_test_store,
    pack_listing,
    restored_root,
    tree_state,
)

KIB = 1024


@dataclass
class History:
    store: Path
    src: Path
    snapshots: list[str] = field(default_factory=list)  # oldest first
    states: dict[str, dict[bytes, tuple[Any, ...]]] = field(default_factory=dict)


def _write(p: Path, n: int) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(os.urandom(n))


def build_history(tmp: Path, versions: int = 3, encryption: str = "repokey") -> History:
    """``versions`` snapshots of one source with 1 MiB packs: v1 has 14 random files of
    ~180 KiB (one blob each, ~5 per pack) and a text directory; each later version
    deletes a few files, rewrites two, adds three and edits the text."""
    src = tmp / "src"
    h = History(tmp / "store", src)
    st = make_store(h.store, encryption=encryption, pack_size=1 << 20)
    for i in range(14):
        _write(src / "bin" / f"f{i:02d}", 180 * KIB + i)
    for i in range(40):
        (src / "text").mkdir(parents=True, exist_ok=True)
        (src / "text" / f"t{i}.txt").write_text(f"line {i}\n" * (i + 1))
    for v in range(versions):
        if v:
            for i in (v * 4, v * 4 + 1, v * 4 + 2):
                (src / "bin" / f"f{i:02d}").unlink(missing_ok=True)
            for i in (v * 4 + 3, 13 - v):
                _write(src / "bin" / f"f{i:02d}", 150 * KIB + v)
            for i in range(3):
                _write(src / f"v{v}" / f"new{i}", 120 * KIB + i)
            (src / "text" / f"t{v}.txt").write_text(f"edited in version {v}\n")
        r = backup(st, [str(src)], BackupOptions())
        h.snapshots.append(r.snapshot.id)
        h.states[r.snapshot.id] = tree_state(src)
    st.close()
    return h


def stored_files(store: Path, prefix: str) -> set[str]:
    return {p.name for p in (store / prefix).rglob("*") if p.is_file()}


def assert_sound(h: History, tmp: Path, snapshots: list[str]) -> None:
    """verify --read-data passes and every listed snapshot restores exactly."""
    st = open_test_store(h.store)
    try:
        rep = verify(st, read_data=True)
        assert rep.ok, rep.problems
        assert sorted(st.snapshot_ids()) == sorted(snapshots)
        for sid in snapshots:
            out = tmp / f"restore-{sid[:8]}"
            shutil.rmtree(out, ignore_errors=True)
            restore(st, sid, str(out))
            got = tree_state(restored_root(out, h.src))
            assert got == h.states[sid], f"snapshot {sid[:8]} does not restore exactly"
            shutil.rmtree(out)
    finally:
        st.close()


def assert_tidy(store: Path) -> None:
    """One index object, naming exactly the packs on the backend."""
    st = open_test_store(store)
    try:
        assert len(index_names(st)) == 1
        st.load_full_index()
        assert set(st.index.packs) == set(pack_listing(st))
    finally:
        st.close()


def locate_file_blob(h: History, rel: str) -> tuple[str, int, int, int]:
    """(pack, offset, length, blobs in that pack) of the first blob of ``src/rel`` in the
    latest snapshot."""
    st = open_test_store(h.store)
    st.load_full_index()
    tree = st.load_tree(st.load_snapshot(h.snapshots[-1]).tree)
    for part in [*str(h.src).strip("/").split("/"), *rel.split("/")]:
        node = tree.find(part.encode())
        assert node is not None
        if node.subtree is not None:
            tree = st.load_tree(node.subtree)
    assert node.content
    loc = st.index.lookup(node.content[0])
    n = len(st.index.packs[loc.pack].entries)
    st.close()
    return loc.pack, loc.entry.offset, loc.entry.length, n
