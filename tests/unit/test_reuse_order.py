"""restore_reuse: copies within one file in an order in which none reads what another
already wrote (property over random chunk layouts), re-hashed before they are written."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.ids import blob_id
from casbackup.ops.restore_reuse import Changed, Copy, copy_local, order_copies

KEY = bytes(range(32))


def _bid(data: bytes) -> bytes:
    return blob_id(KEY, data)


@settings(max_examples=300, deadline=None)
@given(lens=st.lists(st.integers(1, 40), min_size=1, max_size=30), seed=st.integers(0, 2**32),
       pick=st.floats(0.1, 1.0))
def test_ordered_copies_each_read_their_source_intact(lens: list[int], seed: int,
                                                      pick: float) -> None:
    """Chunks of a file moved to random new places (a permutation of the snapshot's
    blob ranges): running the ordered copies on the old bytes, every copy reads exactly
    the bytes the survey found at its source, and only backward copies are left out."""
    rng = random.Random(seed)
    old = bytearray(rng.randbytes(sum(lens)))
    offs = [sum(lens[:k]) for k in range(len(lens))]
    perm = list(range(len(lens)))
    rng.shuffle(perm)
    # the local file holds chunk perm[k] at its k-th slot; the snapshot wants them in order
    local, pos = bytearray(), {}
    for k in perm:
        pos[k] = len(local)
        local += old[offs[k]: offs[k] + lens[k]]
    copies = [Copy(k, offs[k], pos[k], lens[k], b"") for k in range(len(lens))
              if pos[k] != offs[k] and rng.random() < pick]
    ordered = order_copies(copies)
    assert len(set(ordered)) == len(ordered)
    assert set(copies) - set(ordered) <= {c for c in copies if c.src < c.dst}
    buf = bytearray(local)
    for c in ordered:
        data = bytes(buf[c.src: c.src + c.length])
        assert data == local[c.src: c.src + c.length], "a copy read bytes another wrote"
        buf[c.dst: c.dst + c.length] = data
    for c in ordered:
        assert buf[c.dst: c.dst + c.length] == old[c.dst: c.dst + c.length]


def test_pure_shifts_copy_everything() -> None:
    """An insert or a removal (every chunk moved by the same amount): nothing left out."""
    for delta in (100, -100):
        copies = [Copy(k, 1000 * k, 1000 * k + delta, 1000, b"") for k in range(1, 20)]
        assert sorted(order_copies(copies), key=lambda c: c.k) == copies


def test_copy_local_writes_and_counts(tmp_path: Path) -> None:
    p = tmp_path / "f"
    a, b = os.urandom(5000), os.urandom(3000)
    p.write_bytes(b"x" * 100 + a + b)  # the snapshot: a + b
    fd = os.open(p, os.O_RDWR)
    try:
        copies = order_copies([Copy(0, 0, 100, len(a), _bid(a)),
                               Copy(1, len(a), 100 + len(a), len(b), _bid(b))])
        assert copy_local(fd, copies, _bid) == len(a) + len(b)
        os.ftruncate(fd, len(a) + len(b))
    finally:
        os.close(fd)
    assert p.read_bytes() == a + b


def test_a_source_that_changed_is_never_written(tmp_path: Path) -> None:
    """The file changed after the survey: the copy whose source is not its blob stops
    the file (Changed) before writing anything of it."""
    p = tmp_path / "f"
    a = os.urandom(4000)
    p.write_bytes(bytes(10) + a)
    fd = os.open(p, os.O_RDWR)
    try:
        with pytest.raises(Changed):
            copy_local(fd, [Copy(0, 0, 10, len(a), _bid(a[:-1] + b"!"))], _bid)
    finally:
        os.close(fd)
    assert p.read_bytes() == bytes(10) + a
