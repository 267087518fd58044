"""gc on a nearly full store (issue #11): on a small tmpfs a repack that runs out of space
removes the packs it wrote, deletes wholly unused packs first and repacks into the space
that freed; when even that is not enough it fails with one line and leaves no new
garbage of its own."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from casbackup.errors import PermanentError
from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.forget import forget_ids
from casbackup.ops.gc import GcOptions, gc
from casbackup.ops.verify import verify
from tests.helpers import make_store, open_test_store, pack_listing, tmpfs_mount


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with contextlib.ExitStack() as stack:
        try:
            mnt = stack.enter_context(tmpfs_mount(tmp_path / "small", "6m"))
        except OSError as e:
            pytest.skip(f"cannot mount a tmpfs here: {e}")
        yield mnt


def _fill(mnt: Path, leave: int) -> None:
    """Take all but ``leave`` bytes of the filesystem."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def _history(mnt: Path, tmp: Path) -> tuple[str, list[str]]:
    """Snapshots U (4 files of its own), M (m0..m3) and B (m0, m2 and 2 files of its
    own); two 300 kB blobs fill a pack. Forgetting U and M leaves U's packs wholly unused
    and M's packs half used (to repack)."""
    url = str(mnt / "store")
    st = make_store(url, encryption="none", pack_size=400 << 10)
    rnd = random.Random(3)
    dirs = {n: tmp / n for n in "umb"}
    for d in dirs.values():
        d.mkdir()
    for i in range(4):
        (dirs["u"] / f"u{i}").write_bytes(rnd.randbytes(300_000))
        data = rnd.randbytes(300_000)
        (dirs["m"] / f"m{i}").write_bytes(data)
        if i % 2 == 0:
            (dirs["b"] / f"m{i}").write_bytes(data)
    for i in range(2):
        (dirs["b"] / f"g{i}").write_bytes(rnd.randbytes(300_000))
    opts = BackupOptions(archive=ArchiveOptions(workers=1))
    ids = [backup(st, [str(dirs[n])], opts).snapshot.id for n in "umb"]
    forget_ids(st, ids[:2])
    st.close()
    return url, ids[2:]


def test_gc_on_a_full_store_deletes_first_then_repacks(tmpfs: Path, tmp_path: Path) -> None:
    url, ids = _history(tmpfs, tmp_path)
    with open_test_store(url) as st:
        dry = gc(st, GcOptions(dry_run=True, max_unused=0.0))
    assert dry.packs_repacked > 0
    _fill(tmpfs, leave=64 << 10)  # less than one new pack
    with open_test_store(url) as st:
        rep = gc(st, GcOptions(max_unused=0.0))
        assert rep.packs_repacked > 0 and verify(st, read_data=True).ok
        assert st.snapshot_ids() == ids


def test_gc_that_cannot_get_space_leaves_no_garbage(tmpfs: Path, tmp_path: Path) -> None:
    url, _ids = _history(tmpfs, tmp_path)
    with open_test_store(url) as st:  # nothing wholly unused to delete first: repack only
        gc(st, GcOptions(max_unused=1.0))
        before = set(pack_listing(st))
    _fill(tmpfs, leave=64 << 10)
    with open_test_store(url) as st:
        with pytest.raises(PermanentError, match="space"):
            gc(st, GcOptions(max_unused=0.0))
        assert set(pack_listing(st)) <= before  # none of its new packs is left
        assert not list((tmpfs / "store").rglob(".tmp-*"))
        assert verify(st, read_data=True).ok
