"""restore in place: the survey's content comparisons on worker threads (issue #14).

``restore_existing.survey`` opens each changed file in walk order and hashes it on a
pool; the verdicts, the ranges to write and the local copies must be exactly those of
the one-thread survey, whatever order the workers finish in (a small in-flight bound
makes the walk wait on the oldest file often). A worker's read error propagates out of
the survey and no file descriptor is left open, whether the file was being hashed or
still queued; an interrupt on the walking thread (Ctrl-C) leaves no fd and no thread.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

import casbackup.ops.restore_existing as rex
from casbackup.chunking import ChunkerParams
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import plan_of
from casbackup.ops.snapsel import ANY, resolve
from casbackup.store import Store
from tests.helpers import make_store

CHUNKER = ChunkerParams(min_size=2048, avg_size=8192, max_size=32768, seed=5)


def _tree(root: Path, rng: random.Random) -> None:
    for d in range(6):
        sub = root / f"d{d}"
        sub.mkdir(parents=True)
        for f in range(25):
            (sub / f"f{f}").write_bytes(rng.randbytes(rng.choice([0, 100, 5000, 90_000])))


def _mutate(root: Path, rng: random.Random) -> None:
    for p in sorted(root.rglob("f*")):
        data = p.read_bytes()
        k = rng.randrange(6)
        at = rng.randrange(len(data) + 1)
        if k == 0:
            p.write_bytes(data[:at] + rng.randbytes(3000) + data[at:])  # shifted
        elif k == 1 and data:
            p.write_bytes(data[:at] + bytes([data[at - 1] ^ 1]) + data[at:][1:] if at else
                          b"x" + data[1:])
        elif k == 2:
            p.write_bytes(data + b"tail")
        elif k == 3:
            os.utime(p, ns=(0, 12345))  # same content, mtime differs: hashed, UNCHANGED
        # else: untouched (settled by size and mtime)


def _survey(st: Store, data: Path, workers: int) -> rex.Survey:
    snap = resolve(st, "latest", ANY)
    plan = plan_of(st, snap, str(data), 0, [], [])
    items = list(plan.entries())
    root = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return rex.survey(root, items, rex.IF_CHANGED,
                          lambda ids: [st.locate(b).entry.raw_length for b in ids],
                          st.codec.blob_id, hasher=st.codec.blob_hasher,
                          chunker=lambda: st.chunker, workers=workers)
    finally:
        os.close(root)


@pytest.fixture
def mutated(tmp_path: Path) -> tuple[Store, Path]:
    rng = random.Random(7)
    st = make_store(tmp_path / "store", chunker=CHUNKER)
    data = tmp_path / "data"
    _tree(data, rng)
    backup(st, [str(data)], BackupOptions())
    _mutate(data, rng)
    return st, data


@pytest.mark.parametrize("in_flight", [1, 3, 32])
def test_threaded_survey_equals_the_one_thread_survey(
        mutated: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch, in_flight: int) -> None:
    st, data = mutated
    one = _survey(st, data, 1)
    monkeypatch.setattr(rex, "_IN_FLIGHT", in_flight)
    two = _survey(st, data, 3)
    assert two.verdict == one.verdict
    assert two.need == one.need and two.local == one.local and two.ident == one.ident
    assert two.settled == one.settled
    assert one.verdict.count(rex.UPDATE) > 20 and one.local  # the comparisons happened
    assert one.verdict.count(rex.UNCHANGED) > 20


def test_a_read_error_in_a_worker_propagates_and_leaks_no_fd(
        mutated: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    st, data = mutated
    _survey(st, data, 2)  # the store's own lazily opened files are open from here on
    calls = [0]
    real = rex.range_id

    def failing(*a: object, **kw: object) -> bytes | None:
        calls[0] += 1
        if calls[0] == 40:
            raise OSError(5, "Input/output error")
        return real(*a, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(rex, "range_id", failing)
    monkeypatch.setattr(rex, "_IN_FLIGHT", 8)
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="Input/output"):
        _survey(st, data, 2)
    assert calls[0] >= 40
    after = sorted(os.listdir("/proc/self/fd"))
    assert len(after) == len(before), [os.readlink(f"/proc/self/fd/{f}") for f in after
                                       if f not in before]


def test_an_interrupt_on_the_walking_thread_leaks_no_fd_and_no_thread(
        mutated: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    st, data = mutated
    _survey(st, data, 2)  # the store's own lazily opened files are open from here on
    real = st.locate
    calls = [0]

    def interrupted(bid: bytes) -> object:  # asked on the walking thread, per blob
        calls[0] += 1
        if calls[0] == 30:
            raise KeyboardInterrupt
        return real(bid)
    monkeypatch.setattr(st, "locate", interrupted)
    monkeypatch.setattr(rex, "_IN_FLIGHT", 8)
    before = sorted(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        _survey(st, data, 2)
    assert calls[0] == 30
    after = sorted(os.listdir("/proc/self/fd"))
    assert len(after) == len(before), [os.readlink(f"/proc/self/fd/{f}") for f in after
                                       if f not in before]
    assert threading.active_count() == threads
