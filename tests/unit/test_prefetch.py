"""The prefetcher: a child process that walks the sources ahead of the backup walker, by
the walker's rules (excludes, cache tags and markers, one file system, the store's own
directory), started by fork+exec (a fresh interpreter) even from a threaded process."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from casbackup.source.exclude import Excluder
from casbackup.source.prefetch import Prefetcher, _walk
from tests.helpers import tmpfs_mount


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
        pid = p.pid
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
    assert p.pid is None
    assert got in ([], [(0, 10000)])
    p.stop()  # idempotent


def test_walk_follows_the_walkers_rules(tmp_path: Path) -> None:
    _tree(tmp_path)
    root = os.fsencode(tmp_path)
    tag = b"Signature: 8a477f597d28d172789f06886806bc55"
    (tmp_path / "a" / "b" / "CACHEDIR.TAG").write_bytes(tag)
    (tmp_path / "skip" / ".nobackup").write_bytes(b"")
    assert _walk([root], Excluder()) == (6110 + len(tag), 6)
    # a marked directory is kept empty: nothing below it is visited or counted
    assert _walk([root], Excluder(exclude_caches=True)) == (10 + 5000, 3)
    assert _walk([root], Excluder(markers=[".nobackup"])) == (10 + 1100 + len(tag), 4)
    st = os.stat(tmp_path / "skip")
    assert _walk([root], Excluder(), skip_dirs=frozenset({(st.st_dev, st.st_ino)})) == (
        10 + 1100 + len(tag), 4)


def test_one_file_system_stays_on_the_roots_device(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 3)
    try:
        with tmpfs_mount(tmp_path / "mnt", "1m") as mnt:
            (mnt / "g").write_bytes(b"y" * 7)
            root = os.fsencode(tmp_path)
            assert _walk([root], Excluder()) == (10, 2)
            assert _walk([root], Excluder(), one_file_system=True) == (3, 1)
    except OSError as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")


def test_started_from_a_threaded_process_it_is_a_fresh_interpreter(tmp_path: Path) -> None:
    _tree(tmp_path)
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait)  # the daemon's case: other threads run
    busy.start()
    try:
        got: list[tuple[int, int]] = []
        done = threading.Event()

        def on_totals(b: int, f: int) -> None:
            got.append((b, f))
            done.set()

        with Prefetcher([os.fsencode(tmp_path)], Excluder(["*.tmp"]), on_totals) as p:
            assert p.pid is not None
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            assert b"casbackup.source.prefetch" in argv  # exec'd, not a forked copy of us
            assert done.wait(30)
        assert got == [(5110, 3)]
    finally:
        stop.set()
        busy.join()
