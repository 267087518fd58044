"""A crafted tree is refused with exit 13 before anything is written (issue #11).

Tree blobs are written directly with the store API, as a compromised client sharing the
store (or anyone who can write an unencrypted one) could: duplicate and unsorted names,
unsafe names, hard-link groups that disagree, and every node field restore relies on
with a wrong type or out of range. Restoring (even ``--overwrite`` into an empty target)
must leave the target empty and the outside area unchanged, and say why on one line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from casbackup import serde
from casbackup.crypto.codec import DATA, TREE
from casbackup.errors import IntegrityError
from casbackup.model.snapshot import Snapshot
from casbackup.ops.restore import restore
from casbackup.store import Store
from tests.helpers import cli_env, make_store, open_test_store, run_cli
from tests.integration.restore_env import make_outside, outside_state

ID = bytes(range(32))
BYTES_REPR = re.compile(r"\bb['\"]")  # a Python bytes repr in a message


def _file(name: Any, data_id: bytes, size: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "file", "mode": 0o644, "size": size, "content": [data_id],
            **kw}


def _tree(st: Store, maps: list[Any]) -> bytes:
    return st.add_blob(TREE, serde.pack({"nodes": maps})).id


def _snapshot(st: Store, maps: list[Any]) -> str:
    """A snapshot whose root holds a good file, then a directory holding MAPS."""
    good = st.add_blob(DATA, b"good file\n").id
    sub = _tree(st, maps)
    root = _tree(st, [_file(b"aaa-good", good, 10),
                      {"name": b"dir", "type": "dir", "mode": 0o755, "subtree": sub}])
    return st.save_snapshot(Snapshot(1.0, "h", "u", ["/x"], root))


def _cases(outside: Path) -> dict[str, list[Any]]:
    victim = os.fsencode(outside / "victim")
    x = b"data written through a duplicate name"
    xid = bytes(32)  # replaced by the real id in the test
    link = {"nlink": 2, "inode": 77, "device": 1}
    return {
        "duplicate-file-then-symlink": [
            _file(b"x", xid, len(x)), {"name": b"x", "type": "symlink", "target": victim}],
        "duplicate-symlink-then-file": [
            {"name": b"x", "type": "symlink", "target": victim}, _file(b"x", xid, len(x))],
        "duplicate-dir-names": [
            {"name": b"d", "type": "dir", "mode": 0o755},
            {"name": b"d", "type": "symlink", "target": os.fsencode(outside)}],
        "unsorted": [_file(b"b", xid, len(x)), _file(b"a", xid, len(x))],
        "hard-links-disagree": [_file(b"a", xid, len(x), **link),
                                _file(b"b", ID, 5, **link)],
        "nul-in-name": [_file(b"a\0b", xid, len(x))],
        "slash-in-name": [_file(b"../../x", xid, len(x))],
        "dotdot": [{"name": b"..", "type": "dir", "mode": 0o755}],
        "dot": [_file(b".", xid, len(x))],
        "empty-name": [_file(b"", xid, len(x))],
        "name-not-bytes": [_file("x", xid, len(x))],
        "node-not-a-map": [[b"x", "file"]],
        "no-name": [{"type": "file"}],
        "unknown-type": [{"name": b"x", "type": "door"}],
        "mode-huge": [_file(b"x", xid, len(x), mode=2**64 - 1)],
        "mode-type-bits": [_file(b"x", xid, len(x), mode=0o100644)],
        "mode-negative": [_file(b"x", xid, len(x), mode=-1)],
        "mode-bool": [_file(b"x", xid, len(x), mode=True)],
        "uid-negative": [_file(b"x", xid, len(x), uid=-2)],
        "gid-too-big": [_file(b"x", xid, len(x), gid=2**32)],
        "mtime-string": [_file(b"x", xid, len(x), mtime_ns="yesterday")],
        "size-negative": [_file(b"x", xid, -1)],
        "content-string": [{"name": b"x", "type": "file", "content": "abc"}],
        "content-short-id": [{"name": b"x", "type": "file", "content": [b"short"]}],
        "subtree-short": [{"name": b"x", "type": "dir", "subtree": b"12345"}],
        "symlink-no-target": [{"name": b"x", "type": "symlink"}],
        "symlink-nul-target": [{"name": b"x", "type": "symlink", "target": b"a\0b"}],
        "symlink-str-target": [{"name": b"x", "type": "symlink", "target": "victim"}],
        "xattrs-not-pairs": [_file(b"x", xid, len(x), xattrs=[[b"user.k"]])],
        "xattrs-str": [_file(b"x", xid, len(x), xattrs=[["user.k", "v"]])],
        "rdev-negative": [{"name": b"x", "type": "chardev", "rdev": -1}],
    }


CASES = sorted(_cases(Path("/o")))


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("crafted")
    outside = make_outside(base / "outside")
    st = make_store(base / "store")
    x = b"data written through a duplicate name"
    xid = st.add_blob(DATA, x).id
    snaps = {}
    for name, maps in _cases(outside).items():
        for m in maps:
            if isinstance(m, dict) and m.get("content") == [bytes(32)]:
                m["content"] = [xid]
        snaps[name] = _snapshot(st, maps)
    st.close()
    return base, outside, snaps


@pytest.mark.parametrize("case", CASES)
def test_crafted_tree_is_refused_before_writing(
    crafted: tuple[Path, Path, dict[str, str]], tmp_path: Path, case: str
) -> None:
    base, outside, snaps = crafted
    st = open_test_store(base / "store")
    target = tmp_path / "target"
    target.mkdir()
    before = outside_state(outside)
    with pytest.raises(IntegrityError) as ei:
        restore(st, snaps[case], str(target), overwrite="always")
    msg = str(ei.value)
    assert "\n" not in msg and not BYTES_REPR.search(msg), msg
    assert "/dir" in msg, msg  # names where in the snapshot
    assert os.listdir(target) == []
    assert outside_state(outside) == before


@pytest.mark.parametrize("case", ["duplicate-file-then-symlink", "hard-links-disagree",
                                  "nul-in-name", "node-not-a-map", "mode-huge"])
def test_cli_exits_13_and_writes_nothing(
    crafted: tuple[Path, Path, dict[str, str]], tmp_path: Path, case: str
) -> None:
    base, outside, snaps = crafted
    target = tmp_path / "target"
    before = outside_state(outside)
    r = run_cli("restore", "--store", str(base / "store"), "--overwrite", "always", snaps[case],
                str(target), env=cli_env())
    assert r.returncode == 13, r.stderr
    line = r.stderr.decode()
    assert line.startswith("casbackup: ") and line.count("\n") == 1
    assert not BYTES_REPR.search(line)
    assert "Traceback" not in line
    assert not target.exists() or os.listdir(target) == []
    assert outside_state(outside) == before
