"""A failed pack upload ends the backup at once, and the same open Store recovers.

A long-lived Store (watch, daemon, sync) must not carry a failed run's state into the
next one: blobs that were reserved for a pack that never got stored must be stored by the
next backup, not assumed present.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from casbackup.backends.faulty import Fault, FaultyBackend
from casbackup.backends.memory import MemoryBackend
from casbackup.errors import PermanentError
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.ops.verify import verify
from casbackup.store.config import StoreConfig
from casbackup.store.store import Store
from tests.helpers import FAST_KDF, PASSWORD, assert_same_tree, restored_root


class SlowPuts(FaultyBackend):
    """Pack puts take a while, like a remote store's."""

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        if key.startswith("packs/"):
            time.sleep(0.02)
        super().put(key, data, overwrite=overwrite)


def _store(faults: list[Fault]) -> tuple[Store, FaultyBackend]:
    backend = SlowPuts(MemoryBackend(), faults)
    Store.create(
        backend, StoreConfig.new("aes-256-gcm", pack_size=256 << 10), PASSWORD, kdf_n=FAST_KDF
    )
    return Store.open(backend, lambda: PASSWORD), backend


def _source(root: Path, mib: int) -> Path:
    import random

    rnd = random.Random(7)
    root.mkdir()
    for i in range(mib):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(1 << 20))
    return root


def test_first_failed_upload_stops_the_backup_early(tmp_path: Path) -> None:
    fault = Fault(
        ops=frozenset({"put"}), key_prefix="packs/", after=1, times=None, error=PermanentError
    )
    st, backend = _store([fault])
    src = _source(tmp_path / "src", 40)  # ~160 packs of 256 KiB
    with pytest.raises(PermanentError, match="packs/"):
        backup(st, [str(src)], BackupOptions())
    pack_puts = sum(1 for op, k in backend.calls if op == "put" and k.startswith("packs/"))
    assert pack_puts < 40, pack_puts  # not every pack of the source was attempted
    st.close()


def test_same_store_recovers_after_a_failed_upload(tmp_path: Path) -> None:
    fault = Fault(ops=frozenset({"put"}), key_prefix="packs/", after=2, error=PermanentError)
    st, _ = _store([fault])
    src = _source(tmp_path / "src", 4)
    with pytest.raises(PermanentError):
        backup(st, [str(src)], BackupOptions())
    # the same Store object: the next backup must store what the failed one did not,
    # and index the packs the failed run uploaded but had not indexed yet
    backup(st, [str(src)], BackupOptions())
    fresh = Store.open(st.backend, lambda: PASSWORD)  # nothing carried over in memory
    rep = verify(fresh, read_data=True)
    assert rep.ok, rep.problems
    target = tmp_path / "restore"
    restore(fresh, "latest", str(target))
    assert_same_tree(src, restored_root(target, src))
    st.close()
