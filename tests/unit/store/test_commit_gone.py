"""W1b's race (docs/design.md §8): a gc that took a paused backup for stale deletes a pack
the backup had just indexed *after* the backup's W1b check looked. The commit (W2, with
the measured gap) refuses, and then no index object of the backup names the gone pack:
a later backup must not deduplicate against it and commit a snapshot with lost data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casbackup import serde
from casbackup.errors import Locked
from casbackup.ids import DATA, TREE
from casbackup.model.snapshot import Snapshot
from casbackup.store.commit import WriteSession
from casbackup.store.layout import pack_key
from tests.helpers import make_store, open_test_store


def test_a_pack_gone_after_w1b_looked_is_named_by_no_index_object(tmp_path: Path) -> None:
    st = make_store(tmp_path / "s")
    with WriteSession(st, "backup") as ws:
        data = st.add_blob(DATA, os.urandom(5000)).id
        root = st.add_blob(TREE, serde.pack({"nodes": [
            {"name": b"f", "type": "file", "mode": 0o644, "size": 5000,
             "content": [data]}]})).id
        st.flush()  # packs, then the index object naming them; W1b looked: no gap yet
        lost = st.load_index().lookup(data).pack
        kept = st.load_index().lookup(root).pack
        assert lost != kept  # data and trees go to packs of their own
        os.remove(tmp_path / "s" / pack_key(lost))  # the gc that took us for stale
        assert ws.lock is not None
        ws.lock.stale_gaps += 1  # what the heartbeat measures after such a pause
        with pytest.raises(Locked, match="nothing was committed"):
            st.save_snapshot(Snapshot(1.0, "h", "u", ["/x"], root))
    st.close()
    fresh = open_test_store(tmp_path / "s")
    index = fresh.load_index()
    assert index.get(data) is None  # no dedup against the gone pack
    assert index.lookup(root).pack == kept  # the pack still there stays named
    assert fresh.snapshot_ids() == []
