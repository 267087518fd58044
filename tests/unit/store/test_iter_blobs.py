"""Store.iter_blobs (dump's and later mount's read path): on random sequences of blob ids
(with repeats, runs of one id as zero runs make) and read-ahead depths it yields exactly
the blobs in order, reads a run of one id once, and a reader that stops early leaves no
work behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.crypto.codec import DATA
from tests.helpers import make_store


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=30), st.integers(1, 6), st.integers(0, 30))
def test_blobs_in_order_runs_read_once(seq: list[int], ahead: int, stop: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = make_store(Path(tmp) / "store", encryption="none")
        datas = [os.urandom(100 + i) for i in range(6)]
        ids = [s.add_blob(DATA, d).id for d in datas]
        s.flush()
        reads: list[bytes] = []
        get_blob = s.get_blob

        def recording(bid: bytes) -> bytes:
            reads.append(bid)
            return get_blob(bid)
        s.get_blob = recording  # type: ignore[method-assign,assignment]
        wanted = [ids[i] for i in seq]
        assert list(s.iter_blobs(wanted, ahead)) == [datas[i] for i in seq]
        runs = [b for k, b in enumerate(wanted) if k == 0 or wanted[k - 1] != b]
        assert sorted(reads) == sorted(runs)  # (read on threads: in any order)
        it = s.iter_blobs(wanted, ahead)
        got = [b for _, b in zip(range(stop), it, strict=False)]
        it.close()  # stopping early: the pool shuts down, nothing is left running
        assert got == [datas[i] for i in seq[:stop]]
        s.close()
