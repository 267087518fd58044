"""The prefetcher: a child process that walks the sources ahead of the backup walker."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from casbackup.source.exclude import Excluder
from casbackup.source.prefetch import Prefetcher, _walk


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "skip").mkdir()
    (root / "a" / "one").write_bytes(b"x" * 10)
    (root / "a" / "b" / "two").write_bytes(b"y" * 100)
    (root / "a" / "b" / "two.tmp").write_bytes(b"z" * 1000)
    (root / "skip" / "big").write_bytes(b"w" * 5000)
    os.symlink("one", root / "a" / "link")
    os.mkfifo(root / "fifo")


def test_walk_sums_regular_files_and_honours_excludes(tmp_path: Path) -> None:
    _tree(tmp_path)
    root = os.fsencode(tmp_path)
    assert _walk([root], Excluder()) == (6110, 4)
    assert _walk([root], Excluder(["skip/", "*.tmp"])) == (110, 2)
    assert _walk([root + b"/missing"], Excluder()) == (0, 0)


def test_child_reports_totals_and_is_reaped(tmp_path: Path) -> None:
    _tree(tmp_path)
    got: list[tuple[int, int]] = []
    done = threading.Event()

    def on_totals(b: int, f: int) -> None:
        got.append((b, f))
        done.set()

    with Prefetcher([os.fsencode(tmp_path)], Excluder(["*.tmp"]), on_totals) as p:
        pid = p._pid
        assert pid is not None and pid != os.getpid()
        assert done.wait(10)
    assert got == [(5110, 3)]
    # stop() reaped the child: it is gone, not a zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
        raise AssertionError("child was not reaped")
    except ChildProcessError:
        pass


def test_stop_kills_a_child_that_is_still_walking(tmp_path: Path) -> None:
    for i in range(200):
        d = tmp_path / f"d{i:03}"
        d.mkdir()
        for j in range(50):
            (d / f"f{j}").write_bytes(b"")
    got: list[tuple[int, int]] = []
    p = Prefetcher([os.fsencode(tmp_path)], Excluder(), lambda b, f: got.append((b, f)))
    p.start()
    p.stop()  # immediately: killed mid-walk, no totals, no exception, nothing left behind
    assert p._pid is None
    assert got in ([], [(0, 10000)])
    p.stop()  # idempotent
