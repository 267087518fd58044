"""restore in place reuses the chunks already in the local file (issue #14 item 1).

Real stores on disk with a small chunker (many chunks per file). The property test backs
up a random file, turns the target's copy into a random edit of it (shifted by an insert
or a removal, truncated, extended, overwritten, its halves swapped, a region doubled,
megabytes put before it) and restores in place: the file must be the snapshot's byte
for byte. The counting tests prove the reuse happens: after an insert in the middle only
the blobs around it are fetched from the store, and the shifted rest is copied within
the file.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.chunking import ChunkerParams
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.store import PackEntry, Store
from casbackup.store.packread import PackStream
from tests.helpers import make_store

CHUNKER = ChunkerParams(min_size=2048, avg_size=8192, max_size=32768, seed=11)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    base = tmp_path_factory.mktemp("reuse")
    st = make_store(base / "store", chunker=CHUNKER)
    yield st, base
    st.close()


def _edit(rng: random.Random, data: bytes, kind: str) -> bytes:
    n = len(data)
    at = rng.randrange(n + 1)
    if kind == "insert":
        return data[:at] + rng.randbytes(rng.randint(1, 20_000)) + data[at:]
    if kind == "remove":
        return data[:at] + data[at + rng.randint(1, 20_000):]
    if kind == "truncate":
        return data[:at]
    if kind == "extend":
        return data + rng.randbytes(rng.randint(1, 40_000))
    if kind == "overwrite":
        ln = rng.randint(1, 5000)
        return data[:at] + rng.randbytes(ln) + data[at + ln:]
    if kind == "swap":
        return data[at:] + data[:at]
    if kind == "prepend":  # far longer than the snapshot's: cut only so far, rest fetched
        return rng.randbytes(rng.randint(1 << 20, 3 << 20)) + data
    if kind == "double":
        ln = rng.randint(1, 50_000)
        return data[:at + ln] + data[at:]
    return rng.randbytes(rng.randint(0, 2 * n))  # "random"


def _restore_over(st: Store, base: Path, content: bytes, local: bytes) -> tuple[bytes, int]:
    """Back up CONTENT, put LOCAL where it goes, restore in place: (result, bytes read)."""
    work = Path(tempfile.mkdtemp(dir=base))
    src = work / "src"
    src.mkdir()
    (src / "f").write_bytes(content)
    snap = backup(st, [str(src)], BackupOptions()).snapshot.id
    tgt = work / "t"
    tgt.mkdir()
    (tgt / "f").write_bytes(local)
    res = restore(st, f"{snap}:{src}", str(tgt), overwrite="if-changed")
    assert not res.failed and not res.warnings
    return (tgt / "f").read_bytes(), res.bytes_read


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), size=st.integers(0, 400_000),
       edits=st.lists(st.sampled_from(["insert", "remove", "truncate", "extend",
                                       "overwrite", "swap", "double", "prepend", "random"]),
                      min_size=1, max_size=3))
def test_restore_over_an_edited_file_is_byte_exact(
    store: tuple[Store, Path], seed: int, size: int, edits: list[str]
) -> None:
    st, base = store
    rng = random.Random(seed)
    # text-like content repeats itself: chunks of it occur more than once
    words = [rng.randbytes(rng.randint(3, 12)) for _ in range(64)]
    content = b" ".join(rng.choice(words) for _ in range(size // 8))[:size]
    local = content
    for kind in edits:
        local = _edit(rng, local, kind)
    got, _ = _restore_over(st, base, content, local)
    assert got == content


def _counted(st: Store, monkeypatch: pytest.MonkeyPatch) -> list[PackEntry]:
    fetched: list[PackEntry] = []
    real = st.stream_blobs

    def stream_blobs(pack: str, entries: Iterable[PackEntry], **kw: Any) -> PackStream:
        es = list(entries)
        fetched.extend(es)
        return real(pack, es, **kw)
    monkeypatch.setattr(st, "stream_blobs", stream_blobs)
    return fetched


@pytest.mark.parametrize("shift", [+777, -777])
def test_shifted_content_is_copied_from_the_file_not_fetched(
    store: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch, shift: int
) -> None:
    """An insert (or a removal) in the middle of a file of ~100 chunks moves every later
    chunk; restoring over it fetches only the few blobs around the change."""
    st, base = store
    content = os.urandom(800_000)
    mid = len(content) // 2
    local = (content[:mid] + os.urandom(shift) + content[mid:] if shift > 0
             else content[:mid] + content[mid - shift:])
    cuts = [len(c) for c in st.chunker.cut_stream(io.BytesIO(content))]
    moved = sum(1 for k in range(len(cuts)) if sum(cuts[:k]) >= mid)
    assert moved >= 30  # without reuse: every one of them fetched
    fetched = _counted(st, monkeypatch)
    got, read = _restore_over(st, base, content, local)
    assert got == content
    assert 0 < len(fetched) <= 4, f"{len(fetched)} blobs fetched of {moved} moved"
    assert read < 5 * CHUNKER.max_size


def test_a_change_that_shifts_nothing_is_not_cut_to_the_end(
    store: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overwrites across blob boundaries near the start of a file of ~100 chunks (two
    differing ranges in a row, nothing shifted): the file is cut only until its chunks
    line up with the snapshot's again, the rest compared range by range, and only the
    blobs overwritten are fetched."""
    import casbackup.ops.restore_existing as survey_mod

    st, base = store
    content = os.urandom(800_000)
    cuts = [len(c) for c in st.chunker.cut_stream(io.BytesIO(content))]
    b = cuts[0] + cuts[1]  # an overwrite across the second blob boundary
    local = content[:b - 300] + os.urandom(600) + content[b + 300:]
    cut: list[int] = []
    real = survey_mod.local_chunks

    def counted(*a: Any) -> Iterator[tuple[int, int, bytes]]:
        for c in real(*a):
            cut.append(c[1])
            yield c
    monkeypatch.setattr(survey_mod, "local_chunks", counted)
    fetched = _counted(st, monkeypatch)
    got, _ = _restore_over(st, base, content, local)
    assert got == content
    assert len(cuts) >= 60
    assert 0 < len(cut) <= 12  # the changed blobs, then ALIGNED (8) that line up
    assert len(fetched) <= 3
