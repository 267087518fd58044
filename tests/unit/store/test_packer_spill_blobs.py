"""A writer's index object is written after ``index.SPILL_BLOBS`` blobs, not only after
``index_every`` packs: a pack of small files holds ~24k blobs, and 8 of them kept ~190k
blobs (~280 B each) in the in-memory index layer of a full backup of small files
(benchmarks/README.md, "a full backup's memory"). A real store on disk, its own packer
and spill; the blobs are all found again after a reopen (every index object is whole)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casbackup.ids import DATA
from casbackup.store import CacheSettings, open_store
from casbackup.store import packer as packer_mod
from casbackup.store.index import PackInfo, StoreIndex
from tests.helpers import PASSWORD, index_names, make_store

_SPILL = 40


def _run(tmp_path: Path, spill: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Store 400 incompressible 200-byte blobs in 16 KiB packs (~70 a pack, so fewer
    than ``index_every`` packs in all) with SPILL_BLOBS = SPILL; (index objects, the most
    blobs the in-memory layer held after any pack's upload)."""
    monkeypatch.setattr(packer_mod, "SPILL_BLOBS", spill)
    make_store(tmp_path / "s", pack_size=16 << 10).close()
    st = open_store(str(tmp_path / "s"), lambda: PASSWORD, cache=CacheSettings(tmp_path / "c"))
    st.load_index()
    most = [0]
    add_pack = StoreIndex.add_pack

    def counting(self: StoreIndex, pack: PackInfo) -> None:
        add_pack(self, pack)
        most[0] = max(most[0], len(self.blobs))

    monkeypatch.setattr(StoreIndex, "add_pack", counting)
    datas = [os.urandom(200) for _ in range(400)]
    for i in range(0, len(datas), 20):
        st.add_blobs(DATA, datas[i:i + 20])
    st.flush()
    assert st.packer.packs_written < st.packer.index_every, "the packs' rule would index"
    n = len(index_names(st))
    ids = [st.blob_id(d) for d in datas]
    st.close()
    again = open_store(str(tmp_path / "s"), lambda: PASSWORD)
    index = again.load_index()
    assert all(b in index for b in ids) and [again.get_blob(b) for b in ids[::37]] == datas[::37]
    again.close()
    return n, most[0]


def test_an_index_object_every_spill_blobs_bounds_the_layer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n, most = _run(tmp_path, _SPILL, monkeypatch)
    assert n >= 4  # ~6 packs of ~70 blobs, each over the 40-blob threshold
    # what the layer holds: at most the uploads in flight and the threshold's tail
    assert most <= _SPILL + 3 * 80, most


def test_without_the_blob_rule_one_index_object_at_flush(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contrast that shows the test above can fail: by packs alone (fewer than
    ``index_every``), every blob stays in the layer until the flush's one object."""
    n, most = _run(tmp_path, 1 << 30, monkeypatch)
    assert n == 1
    assert most == 400
