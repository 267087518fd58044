"""A planted tree: someone holding a repokey store's key replaces the tree of one
snapshot's backed-up directory by a crafted one (msgpack built byte by byte: a duplicate
key, content on a directory, a 33-byte subtree id, names out of order, trailing bytes),
sealed with the store's own key under its true keyed id, with the parent trees up to a
new root re-encoded around it and the snapshot rewritten to name that root. The blobs only
that snapshot holds (a changed file's chunks) are live only through the crafted tree.

``gc`` (which reads trees for their ids only, ``model.tree.tree_ids``) and ``verify``
(which reads them like restore, ``scan_tree``) run as real processes: each exits 13 with
one line naming the crafted tree, and not one pack is deleted or changed (the pack
listing and every pack's bytes are compared before and after). A gc that took the
crafted tree, or skipped it, would delete or rewrite the packs of what it holds.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from casbackup.crypto.codec import TREE
from casbackup.model.tree import DIR, decode_maps, encode_maps
from casbackup.store import Store
from tests.helpers import cli_env, make_store, open_test_store
from tests.unit.model.test_tree_crafted import mp, node, rarr, rmap

Pairs = list[tuple[bytes, bytes]]


def _run(store: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "casbackup", *args, "--store", str(store)],
                          env=cli_env(), capture_output=True, timeout=240)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two backups of src/ (files a, b and sub/c); b changes between them, so the second
    snapshot alone holds b's new chunks."""
    root = tmp_path_factory.mktemp("planted-base")
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a", "b", "sub/c"):
        (src / name).write_bytes(os.urandom(20_000))
    make_store(root / "store").close()
    assert _run(root / "store", "backup", str(src)).returncode == 0
    (src / "b").write_bytes(os.urandom(20_000))
    r = _run(root / "store", "backup", str(src))
    assert r.returncode == 0, r.stderr
    return root


def _tree(nodes: list[Pairs], tail: bytes = b"") -> bytes:
    return rmap([(mp("nodes"), rarr([rmap(n) for n in nodes]))]) + tail


def _named(maps: list[dict[str, Any]], name: bytes) -> int:
    return [m["name"] for m in maps].index(name)


def _dup_type(maps: list[dict[str, Any]]) -> bytes:
    nodes = [node(m) for m in maps]
    nodes[_named(maps, b"sub")].append((mp("type"), mp("file")))  # a file with a subtree
    return _tree(nodes)


def _content_on_dir(maps: list[dict[str, Any]]) -> bytes:
    b = maps[_named(maps, b"b")]
    sub = {**maps[_named(maps, b"sub")], "content": b["content"]}
    return _tree([node(sub if m["name"] == b"sub" else m) for m in maps])


def _long_subtree(maps: list[dict[str, Any]]) -> bytes:
    nodes = [node(m) for m in maps]
    nodes[_named(maps, b"sub")].append((mp("subtree"), mp(maps[_named(maps, b"sub")]
                                                            ["subtree"] + b"\0")))
    return _tree(nodes)


def _unsorted(maps: list[dict[str, Any]]) -> bytes:
    nodes = [node(m) for m in maps]
    return _tree([nodes[1], nodes[0], *nodes[2:]])


def _trailing(maps: list[dict[str, Any]]) -> bytes:
    return _tree([node(m) for m in maps], tail=mp(None))


CRAFTS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
    "a directory's type repeated as file": _dup_type,
    "content on a directory": _content_on_dir,
    "a subtree id of 33 bytes": _long_subtree,
    "names out of order": _unsorted,
    "trailing bytes": _trailing,
}


def _plant(st: Store, sid: str, craft: Callable[[list[dict[str, Any]]], bytes]) -> bytes:
    """Replace snapshot SID's tree of src/ by CRAFT(its node maps), re-encode the trees
    above it and rewrite the snapshot (the old object deleted); the crafted tree's id."""
    snap = st.load_snapshot(sid)
    path = [(snap.tree, decode_maps(st.get_blob(snap.tree)))]
    while not any(m["name"] == b"sub" for m in path[-1][1]):  # down to src/
        (only,) = path[-1][1]
        path.append((only["subtree"], decode_maps(st.get_blob(only["subtree"]))))
    crafted = craft(path[-1][1])
    child = st.add_blob(TREE, crafted).id
    planted = child
    for _, maps in reversed(path[:-1]):
        (only,) = maps
        assert only["type"] == DIR
        child = st.add_blob(TREE, encode_maps([{**only, "subtree": child}])).id
    new = st.save_snapshot(replace(snap, tree=child, time=time.time()))
    st.backend.delete(f"snapshots/{sid}")
    assert new != sid
    return planted


def _packs(store: Path) -> dict[str, str]:
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((store / "packs").rglob("*")) if p.is_file()}


@pytest.mark.parametrize("craft", CRAFTS)
def test_a_planted_crafted_tree_stops_gc_and_verify_and_no_pack_changes(
        base: Path, tmp_path: Path, craft: str) -> None:
    import shutil

    shutil.copytree(base, tmp_path / "c", symlinks=True)
    store = tmp_path / "c" / "store"
    st = open_test_store(store)
    try:
        newest = max(st.snapshots(), key=lambda s: s.time).id
        planted = _plant(st, newest, CRAFTS[craft])
    finally:
        st.close()
    before = _packs(store)
    tid = planted.hex()[:16]

    r = _run(store, "gc")
    err = r.stderr.decode()
    assert r.returncode == 13, (craft, r.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("casbackup: "), err
    assert f"tree {tid}" in lines[0] and "Traceback" not in err, err
    assert _packs(store) == before

    r = _run(store, "verify")
    err, out = r.stderr.decode(), r.stdout.decode()
    assert r.returncode == 13, (craft, r.returncode, err, out)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    named = [ln for ln in out.splitlines() if f"tree {tid}" in ln]
    assert len(named) == 1, out
    assert _packs(store) == before
