"""Store.refresh_index (long-lived stores see other writers' index objects and gc's
consolidation) and Store.local_path (the watch hint)."""

from __future__ import annotations

from pathlib import Path

from casbackup.crypto.codec import DATA
from casbackup.store import open_store
from tests.helpers import PASSWORD, make_store


def test_refresh_picks_up_new_index_objects(tmp_path: Path) -> None:
    a = make_store(tmp_path / "s")
    a.load_index()
    b = open_store(str(tmp_path / "s"), lambda: PASSWORD)
    bid = b.add_blob(DATA, b"hello from another writer").id
    b.flush()
    assert not a.has_blob(bid)
    a.refresh_index()
    assert a.has_blob(bid)
    assert a.get_blob(bid) == b"hello from another writer"


def test_refresh_rebuilds_when_an_index_object_vanished(tmp_path: Path) -> None:
    a = make_store(tmp_path / "s")
    x = a.add_blob(DATA, b"x" * 100).id
    a.flush()
    idx_obj = a.packer.index  # the packer's Index must stay the same object
    (name,) = list(a.index.objects)
    # another process consolidates: writes the same packs under a new index object
    b = open_store(str(tmp_path / "s"), lambda: PASSWORD)
    b.load_full_index()
    b.write_index(list(b.index.packs.values()), supersedes=[name])
    (tmp_path / "s" / "index" / name).unlink()
    a.refresh_index()
    assert name not in a.index.objects and len(a.index.objects) == 1
    assert a.index is idx_obj and a.has_blob(x)
    y = a.add_blob(DATA, b"y" * 100)
    assert y.added and a.add_blob(DATA, b"x" * 100).added is False


def test_local_path(tmp_path: Path) -> None:
    st = make_store(tmp_path / "s")
    assert st.local_path() == str(tmp_path / "s")
    mem = make_store("memory://")
    assert mem.local_path() is None
