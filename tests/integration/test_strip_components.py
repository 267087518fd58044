"""--strip-components N (issue #14 item 2) on restore, ls, dump and find: one
implementation (``ops.strip``), borg's semantics. Each command is run as a real process
against a real store on disk; the property test checks the function itself against a
plain model of "drop N components".
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.ops.strip import strip_components
from tests.helpers import json_lines, make_store, open_test_store, run_cli, tree_state

SEGMENT = st.binary(min_size=1, max_size=4).filter(lambda b: b"/" not in b)


@given(st.lists(SEGMENT, max_size=6), st.integers(0, 8), st.booleans())
def test_strip_components_drops_exactly_n_components(parts: list[bytes], n: int,
                                                     absolute: bool) -> None:
    path = (b"/" if absolute else b"") + b"/".join(parts)
    got = strip_components(path, n)
    if n == 0:
        assert got == path
    elif len(parts) <= n:
        assert got is None
    else:
        assert got == (b"/" if absolute else b"") + b"/".join(parts[n:])


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """(store, source, the number of components of the source's absolute path)."""
    tmp = tmp_path_factory.mktemp("strip")
    src = tmp / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f1").write_bytes(b"one")
    (src / "a" / "c").write_bytes(b"c" * 5000)
    (src / "t").write_bytes(b"top")
    os.link(src / "a" / "c", src / "a" / "b" / "c-link")
    st_ = make_store(tmp / "store")
    backup(st_, [str(src)], BackupOptions())
    st_.close()
    return tmp / "store", src, len(Path(os.path.abspath(src)).parts) - 1


def test_ls_strips_shown_paths_and_leaves_out_shallower_entries(
        snap: tuple[Path, Path, int]) -> None:
    store, src, depth = snap
    r = run_cli("ls", "--store", str(store), "-R", "--strip-components", str(depth),
                "latest", str(src))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["/a", "/a/b", "/a/b/c-link", "/a/b/f1", "/a/c",
                                         "/t"]
    r = run_cli("ls", "--store", str(store), "--json", "-R", "--strip-components",
                str(depth + 1), "latest", str(src))
    assert r.returncode == 0, r.stderr
    assert [n["path"] for n in json_lines(r.stdout, "node")] == ["/b", "/b/c-link",
                                                                  "/b/f1", "/c"]


def test_find_strips_matches_and_no_match_left_is_exit_4(
        snap: tuple[Path, Path, int]) -> None:
    store, src, depth = snap
    r = run_cli("find", "--store", str(store), "--json", "--strip-components", str(depth),
                "c*", "f1", "t")
    assert r.returncode == 0, r.stderr
    (group,) = json_lines(r.stdout, "matches")
    assert [m["path"] for m in group["matches"]] == ["/a/b/c-link", "/a/b/f1", "/a/c", "/t"]
    assert group["hits"] == 4
    r = run_cli("find", "--store", str(store), "--strip-components", str(depth + 1), "t")
    assert r.returncode == 4, r.stdout  # /t has nothing left: no match remains


def test_dump_tar_member_names_are_stripped_like_a_restore(
        snap: tuple[Path, Path, int], tmp_path: Path) -> None:
    store, src, depth = snap
    r = run_cli("dump", "--store", str(store), "--strip-components", str(depth + 1),
                "latest", "/")
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        names = tf.getnames()
        assert names == ["b", "b/c-link", "b/f1", "c"]
        assert tf.getmember("b/c-link").isfile()  # the first of the hard links
        assert tf.getmember("c").islnk() and tf.getmember("c").linkname == "b/c-link"
    (tmp_path / "x").mkdir()  # GNU tar keeps the PAX mtimes' nanoseconds
    subprocess.run(["tar", "-x", "-C", str(tmp_path / "x")], input=r.stdout, check=True)
    st_ = open_test_store(store)
    restore(st_, "latest", str(tmp_path / "r"), strip_components=depth + 1)
    st_.close()
    assert tree_state(tmp_path / "x") == tree_state(tmp_path / "r")
    r = run_cli("dump", "--store", str(store), "--strip-components", "1", "latest",
                str(src / "t"))
    assert r.returncode == 2 and not r.stdout
    assert b"--strip-components" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_negative_strip_components_is_refused(snap: tuple[Path, Path, int]) -> None:
    store, src, _ = snap
    for cmd in (["ls", "latest"], ["find", "t"], ["dump", "latest", str(src / "t")]):
        r = run_cli(cmd[0], "--store", str(store), "--strip-components", "-1", *cmd[1:])
        assert r.returncode == 2 and not r.stdout, (cmd, r.stdout)
