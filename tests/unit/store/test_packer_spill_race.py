"""A blob is stored once even when the writer's index layer spills it between the
packer's lock-free lookup and its check under the lock (wave 5's note, issue #12).

Thread B's lock-free ``blob in index`` runs while thread A's pack with that blob is still
uploading (a miss); A's upload then indexes the pack, drops the blob from ``pending``, and
the index object it writes moves the pack out of the dicts into a spilled file; only then
does B take the packer's lock. Before the fix B found the blob neither in the dicts nor
in ``pending`` and reserved it again: a second copy in a second pack. The interleaving is
forced with a real store on disk (its own spill, its own packer), not simulated."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from casbackup.store import CacheSettings, open_store
from casbackup.store.index import StoreIndex
from casbackup.store.store import Store
from tests.helpers import PASSWORD, make_store


class _RacingIndex(StoreIndex):
    """Runs ``between`` once, right after a lock-free lookup that missed: the moment
    another thread's upload, index write and spill would land in."""

    between: Callable[[], None] | None = None

    def __contains__(self, blob_id: bytes) -> bool:
        hit = super().__contains__(blob_id)
        between, type(self).between = type(self).between, None
        if between is not None and not hit:
            between()
        return hit


def _store(tmp_path: Path) -> Store:
    make_store(tmp_path / "s").close()
    st = open_store(str(tmp_path / "s"), lambda: PASSWORD,
                    cache=CacheSettings(tmp_path / "cache"))
    st.load_index()
    st.index.__class__ = _RacingIndex
    return st


@pytest.mark.parametrize("many", [False, True])
def test_a_blob_spilled_between_lookup_and_lock_is_not_reserved_again(
        tmp_path: Path, many: bool) -> None:
    st = _store(tmp_path)
    packer = st.packer
    bid = os.urandom(32)
    assert packer.reserve(bid)
    packer.add("data", bid, b"x" * 100, 90)  # in the open pack, not yet uploaded

    def upload_index_and_spill() -> None:
        packer.flush()  # the pack is put, indexed, leaves pending; its index object spills
        assert bid not in st.index.blobs and st.index.spilled, "the layer did not spill"

    _RacingIndex.between = upload_index_and_spill
    again = packer.reserve_many([bid])[0] if many else packer.reserve(bid)
    assert _RacingIndex.between is None, "the interleaving did not happen"
    assert not again, "the blob would be sealed and stored a second time"
    packer.flush()
    assert packer.blobs_added == 1 and packer.packs_written == 1
    st.close()
