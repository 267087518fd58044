"""ops.status: a store's size, snapshots, dedup ratio and locks; errors become a status."""

from __future__ import annotations

import time
from pathlib import Path

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.status import collect, display_url, probe
from casbackup.store.locks import shared_lock
from tests.helpers import PASSWORD, make_store


def test_status_collect_and_probe(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"same" * 10000)
    with make_store(tmp_path / "s") as st:
        for _ in range(3):
            backup(st, [str(src)], BackupOptions())
        with shared_lock(st, "backup"):
            status = collect(st)
    assert status.reachable and status.snapshots == 3 and status.packs >= 1
    assert status.logical_bytes == 3 * 40000
    assert status.dedup_ratio is not None and status.dedup_ratio > 3  # stored once, compressed
    assert status.last_snapshot_time is not None and time.time() - status.last_snapshot_time < 60
    (lock,) = status.locks
    assert lock.operation == "backup" and status.stale_locks == []
    m = status.to_map(time.time())
    assert m["snapshots"] == 3 and m["locks"][0]["stale"] is False

    again = probe(str(tmp_path / "s"), lambda: PASSWORD)
    assert again.reachable and again.snapshots == 3 and again.locks == []
    wrong = probe(str(tmp_path / "s"), lambda: "wrong")
    assert not wrong.reachable and wrong.exit_code == 12
    missing = probe(str(tmp_path / "none"), None)
    assert not missing.reachable and missing.exit_code == 10 and missing.dedup_ratio is None


def test_display_url() -> None:
    assert display_url("sftp://u:secret@h:22/p?key=/k") == "sftp://u@h:22/p"
    assert display_url("s3://b/p?endpoint=x") == "s3://b/p"
    assert display_url("relative/store").startswith("/")
