"""A tree 1,000 and 5,000 levels deep (issue #11: RecursionError lost the snapshot): backup,
ls -R, stats, diff, verify and sync all work through the real CLI, since every walk is
iterative. The deep directory is removed iteratively afterwards (shutil.rmtree recurses)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import deep_chain, json_lines, json_result, run_cli


def _make_chain(root: Path, depth: int) -> None:
    deep_chain(root, depth)


def _remove_chain(root: Path) -> None:
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while "d" in os.listdir(fds[-1]):
            fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        while fds:
            fd = fds.pop()
            for name in os.listdir(fd):
                if name != "d":
                    os.unlink(name, dir_fd=fd)
            if fds:
                os.rmdir("d", dir_fd=fds[-1])
            os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.fixture(params=[1000, 5000])
def deep(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    src = tmp_path / "src"
    _make_chain(src, request.param)
    yield src, request.param
    _remove_chain(src)


def _ok(*args: str) -> str:
    r = run_cli(*args, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert b"Traceback" not in r.stderr
    return r.stdout.decode()


def test_deep_tree_backs_up_and_every_reading_command_works(
        deep: tuple[Path, int], tmp_path: Path) -> None:
    src, depth = deep
    store, copy = str(tmp_path / "store"), str(tmp_path / "copy")
    _ok("init", "--store", store)
    first = json_result(_ok("backup", "--store", store, str(src), "--json"))
    assert first["dirs"] >= depth and first["unreadable_files"] == 0
    (src / "top.txt").write_text("changed")
    _ok("backup", "--store", store, str(src))

    prefix = "/" + str(src).strip("/")
    listing = _ok("ls", "--store", store, "-R", "latest", prefix).splitlines()
    assert len(listing) == depth + 2  # the d chain, leaf.txt and top.txt
    assert listing[-2].endswith("/d" * depth + "/leaf.txt") and listing[-1].endswith("/top.txt")

    stats = json_result(_ok("stats", "--store", store, "latest", "--json"), "stats")
    assert stats["total_file_count"] == 2 and stats["total_dir_count"] >= depth
    assert json_result(_ok("stats", "--store", store, "--json"), "stats")["snapshots_count"] == 2

    ids = [s["id"] for s in json_lines(_ok("snapshots", "--store", store, "--json"), "snapshot")]
    changes = json_lines(_ok("diff", "--store", store, ids[0], ids[1], "--json"), "change")
    assert [(c["path"], c["change"]) for c in changes] == [(prefix + "/top.txt", "modified")]

    (src / "d").rename(src / "e")  # every level below is removed and added
    try:
        _ok("backup", "--store", store, str(src))
    finally:
        (src / "e").rename(src / "d")
    moved = json_result(_ok("diff", "--store", store, ids[1], "latest", "--json"))
    assert (moved["added"], moved["removed"]) == (depth + 1, depth + 1)
    assert "no problems found" in _ok("verify", "--store", store, "--read-data")

    _ok("init", "--store", copy, "--from", store)
    _ok("sync", store, copy)
    assert "no problems found" in _ok("verify", "--store", copy)
    copied = _ok("ls", "--store", copy, "-R", "latest", prefix).splitlines()
    assert copied == _ok("ls", "--store", store, "-R", "latest", prefix).splitlines()


def test_source_path_of_1200_components_backs_up_and_lists(tmp_path: Path) -> None:
    """The directories above a source are built iteratively too (backup's ``_build``)."""
    top = tmp_path / "p"
    _make_chain(top, 1200)  # top/d/d/.../d: a 2.4 KB path, under PATH_MAX
    try:
        source = str(top) + "/d" * 1200
        store = str(tmp_path / "store")
        _ok("init", "--store", store)
        _ok("backup", "--store", store, source)
        listing = _ok("ls", "--store", store, "-R", "latest").splitlines()
        assert listing[-1] == source + "/leaf.txt" and len(listing) == source.count("/") + 1
        snap = json_lines(_ok("snapshots", "--store", store, "--json"), "snapshot")[0]
        assert snap["paths"] == [source]
    finally:
        _remove_chain(top)
