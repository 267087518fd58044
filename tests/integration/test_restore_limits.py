"""restore at the edges: a 1,200-level tree, a full target, an interrupt (issue #11).

- Every walk is iterative: a tree deeper than Python's recursion limit restores, whole
  and with ``--include`` of an unrelated file.
- A target that fills up (a small tmpfs) names each file that could not be written,
  finishes the rest and exits 3; no partially written file stays behind.
- An interrupt (SIGINT in the main thread) stops every restore thread, propagates as
  KeyboardInterrupt, and leaves only complete files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.observer import Observer
from casbackup.ops.restore import restore
from tests.helpers import cli_env, deep_chain, make_store, restored_root, run_cli, tmpfs_mount
from tests.integration.restore_env import deep_tmp  # noqa: F401  (a fixture)

DEPTH = 1200


def _deep(root: Path) -> None:
    """root/top.txt and root/d/d/.../d (DEPTH levels)/leaf.txt, made fd-relative."""
    deep_chain(root, DEPTH, top=b"top\n", leaf=b"deep leaf\n", leaf_mode=0o640)


def _levels(root: Path) -> Iterator[tuple[int, list[str]]]:
    """(level, sorted names) down the chain of ``d`` directories, iteratively."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    level = 0
    try:
        while True:
            names = sorted(os.listdir(fd))
            yield level, names
            if "d" not in names:
                return
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd, level = nfd, level + 1
    finally:
        os.close(fd)


@pytest.mark.usefixtures("deep_tmp")
def test_1200_level_tree_restores_whole_and_with_include(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _deep(src)
    st = make_store(tmp_path / "store")
    res = backup(st, [str(src)], BackupOptions())
    assert res.summary.unreadable == 0
    out = tmp_path / "out"
    restore(st, "latest", str(out), verify=True)
    levels = list(_levels(restored_root(out, src)))
    assert len(levels) == DEPTH + 1
    assert levels[0][1] == ["d", "top.txt"] and levels[-1][1] == ["leaf.txt"]
    assert all(names == ["d"] for _, names in levels[1:-1])

    out2 = tmp_path / "out2"
    restore(st, "latest", str(out2), include=["/**/top.txt"])
    assert os.listdir(restored_root(out2, src)) == ["top.txt"]
    out3 = tmp_path / "out3"
    restore(st, "latest", str(out3), include=["leaf.txt"])
    assert len(list(_levels(restored_root(out3, src)))) == DEPTH + 1


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with contextlib.ExitStack() as stack:
        try:
            mnt = stack.enter_context(tmpfs_mount(tmp_path / "full", "1m"))
        except OSError as e:
            pytest.skip(f"cannot mount a tmpfs: {e}")
        yield mnt


def test_full_target_names_the_file_and_exits_partial(tmp_path: Path,
                                                      small_tmpfs: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}.bin").write_bytes(os.urandom(300_000))
    (src / "big.bin").write_bytes(os.urandom(3 << 20))  # several chunks: the creator's
    (src / "small.txt").write_bytes(b"fits\n")
    store = tmp_path / "store"
    make_store(store)
    assert run_cli("backup", "--store", str(store), str(src), env=cli_env()).returncode == 0
    target = small_tmpfs / "t"
    r = run_cli("restore", "--store", str(store), "latest", str(target), env=cli_env())
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "No space left on device" in err
    assert f"{src}/big.bin" in err or f"{src}/f" in err  # a file is named
    assert "Traceback" not in err
    root = restored_root(target, src)
    left = list(root.iterdir())
    assert left  # what fits is restored (a failed file's space is freed again)
    for p in left:  # and complete: no half-file
        assert p.read_bytes() == (src / p.name).read_bytes(), p


class _Interrupter(Observer):
    """Sends SIGINT to the main thread on the first progress report (from a worker)."""

    def __init__(self) -> None:
        self.sent = False

    def progress(self, nbytes: int, nfiles: int = 0) -> None:
        if not self.sent:
            self.sent = True
            main = threading.main_thread().ident
            assert main is not None
            signal.pthread_kill(main, signal.SIGINT)


def test_interrupt_stops_the_threads_and_leaves_no_half_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"big{i}.bin").write_bytes(os.urandom((1 << 20) + i * 70_000))
    for i in range(200):
        (src / f"s{i}").write_bytes(os.urandom(3000))
    st = make_store(tmp_path / "store")
    backup(st, [str(src)], BackupOptions())
    # Python's own handler (an in-process CLI test may have left the CLI's installed)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    obs = _Interrupter()
    target = tmp_path / "t"
    try:
        with pytest.raises(KeyboardInterrupt):
            restore(st, "latest", str(target), observer=obs, workers=1)
    finally:
        signal.signal(signal.SIGINT, old)
    assert obs.sent
    alive = [t.name for t in threading.enumerate()
             if t.name.startswith(("restore", "create"))]
    assert alive == []
    root = restored_root(target, src)
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    for name in left:
        assert (root / name).read_bytes() == (src / name).read_bytes(), name
    assert len(left) < 240  # it did stop early
