"""TreeAhead gives the walker exactly what Store.load_tree_maps gives, errors included,
holds at most ``limit`` trees, and a re-backup through it stores the same trees."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from casbackup.errors import IntegrityError
from casbackup.model.tree import DIR, FILE
from casbackup.ops import tree_ahead
from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.tree_ahead import TreeAhead
from casbackup.store import Store
from casbackup.store.index import StoreIndex
from casbackup.store.pack import pack_key
from tests.helpers import make_store


def _tree(root: Path, dirs: int) -> None:
    for i in range(dirs):
        d = root / f"d{i:03d}" / "sub"
        d.mkdir(parents=True)
        (d / "f").write_bytes(b"x%d" % i)


def _dir_trees(store: Store, tree_id: bytes) -> list[bytes]:
    """Every subtree id below TREE_ID, depth first."""
    out = []
    for m in store.load_tree_maps(tree_id):
        if m["type"] == DIR:
            out.append(m["subtree"])
            out += _dir_trees(store, m["subtree"])
    return out


def _backup(store: Store, src: Path) -> bytes:
    """The tree id of SRC itself in a new snapshot (the path prefixes above it, /tmp
    and the like, change whenever anything is created there)."""
    res = backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(prefetch=False)))
    tid = res.snapshot.tree
    for part in [c for c in os.fsencode(src).split(b"/") if c]:
        node = next(n for n in store.load_tree(tid).nodes if n.name == part)
        assert node.subtree is not None
        tid = node.subtree
    return tid


def _damage(store: Store, store_dir: Path, tree_id: bytes) -> None:
    """Flip a byte of TREE_ID's sealed blob in its pack (and forget its decoded maps)."""
    loc = store.load_index().lookup(tree_id)
    path = store_dir / pack_key(loc.pack)
    data = bytearray(path.read_bytes())
    data[loc.entry.offset + loc.entry.length // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    store._maps_cache.clear()


def test_same_maps_as_the_store_and_bounded(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    src = tmp_path / "src"
    _tree(src, 40)
    root = _backup(store, src)
    ids = _dir_trees(store, root)
    ahead = TreeAhead(store, limit=16)
    ahead.want(ids)
    assert len(ahead._ahead) == 16  # the rest is read by the walker itself
    ahead.want(ids)  # already wanted: nothing more
    assert len(ahead._ahead) == 16
    for tid in ids:
        assert ahead.maps(tid) == store.load_tree_maps(tid)
    assert not ahead._ahead
    ahead.want(ids[:5])
    ahead.close()  # fetched, never asked for: dropped
    assert not ahead._ahead


def test_a_damaged_tree_fails_when_asked_for_like_the_store(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    src = tmp_path / "src"
    _tree(src, 3)
    root = _backup(store, src)
    victim = _dir_trees(store, root)[0]
    _damage(store, tmp_path / "store", victim)
    with pytest.raises(IntegrityError) as plain:
        store.load_tree_maps(victim)
    ahead = TreeAhead(store)
    ahead.want([victim])  # the fetch fails on a pool thread: nothing raised yet
    with pytest.raises(IntegrityError) as fetched:
        ahead.maps(victim)
    assert str(fetched.value) == str(plain.value)
    ahead.close()


def test_rebackup_through_tree_ahead_keeps_every_tree(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    src = tmp_path / "src"
    _tree(src, 30)
    first = _backup(store, src)
    assert _backup(store, src) == first  # unchanged: every tree read ahead and reused
    (src / "d007" / "sub" / "f").write_bytes(b"changed")
    third = _backup(store, src)
    assert third != first
    kept = set(_dir_trees(store, first)) & set(_dir_trees(store, third))
    assert len(kept) == 2 * 29  # every d### and its sub but d007's


def _stored(tmp_path: Path, dirs: int) -> tuple[Store, list[bytes]]:
    """A store holding a backup of ``_tree(DIRS)``, and every subtree id of it."""
    store = make_store(tmp_path / "store")
    _tree(tmp_path / "src", dirs)
    return store, _dir_trees(store, _backup(store, tmp_path / "src"))


def _named(maps: list[dict[str, Any]]) -> list[bytes]:
    return [b for m in maps for b in (m.get("content") or ())] + [
        m["subtree"] for m in maps if m["type"] == DIR]


def test_checked_maps_asks_the_index_once_for_every_tree_fetched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trees fetched by the time one is asked for get their missing ids in the same
    index call (parent_index.py): the same answers as one lookup per id."""
    store, ids = _stored(tmp_path, 12)
    index = store.load_index()
    (gone,) = _named([m for m in store.load_tree_maps(ids[7]) if m["type"] == FILE])
    del index.blobs[gone]  # as repair drops a damaged blob
    calls: list[int] = []
    real = StoreIndex.contains_many

    def counted(self: StoreIndex, blob_ids: list[bytes]) -> list[bool]:
        calls.append(len(blob_ids))
        return real(self, blob_ids)

    monkeypatch.setattr(StoreIndex, "contains_many", counted)
    ahead = TreeAhead(store)
    ahead.want(ids)
    for fut, _ in list(ahead._ahead.values()):
        fut.result()  # every fetch done
    got = {t: ahead.checked_maps(t, index) for t in ids}
    assert calls == [len(ids)]  # one call; each d### names its sub, each sub its f
    for t, (maps, missing) in got.items():
        assert maps == store.load_tree_maps(t)
        assert missing == {b for b in _named(maps) if b not in index}
    assert got[ids[7]][1] == {gone}
    assert not ahead._ahead and not ahead._checked
    ahead.close()


def test_checked_maps_raises_a_fetch_error_only_for_its_tree(tmp_path: Path) -> None:
    store, ids = _stored(tmp_path, 3)
    victim, other = ids[:2]
    _damage(store, tmp_path / "store", victim)
    ahead = TreeAhead(store)
    ahead.want([victim, other])
    for fut, _ in list(ahead._ahead.values()):
        fut.result()
    maps, missing = ahead.checked_maps(other, store.index)  # the damaged one beside it
    assert maps == store.load_tree_maps(other) and not missing
    with pytest.raises(IntegrityError):
        ahead.checked_maps(victim, store.index)
    ahead.close()


def test_checked_maps_leaves_a_large_fetched_tree_undecoded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetched tree above ``EARLY_BYTES`` is not decoded (nor held as maps) when another
    is asked for: memory stays bounded by bytes, not by ~10x them."""
    store, ids = _stored(tmp_path, 4)
    sizes = {t: len(store.tree_blob(t)) for t in ids}
    monkeypatch.setattr(tree_ahead, "EARLY_BYTES", min(sizes.values()))
    ahead = TreeAhead(store)
    ahead.want(ids)
    for fut, _ in list(ahead._ahead.values()):
        fut.result()
    ahead.checked_maps(ids[0], store.index)
    assert set(ahead._checked) == {t for t in ids[1:] if sizes[t] <= min(sizes.values())}
    assert set(ahead._ahead) == {t for t in ids[1:] if sizes[t] > min(sizes.values())}
    for t in ids[1:]:
        assert ahead.checked_maps(t, store.index)[0] == store.load_tree_maps(t)
    ahead.close()
