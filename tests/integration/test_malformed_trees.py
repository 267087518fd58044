"""Crafted trees in a real store (issue #11: a store shared with a compromised client, or an
unencrypted one anyone can write): verify names the snapshot, tree and path of every
malformed node and exits 13; ls, stats and diff exit 13 with one line; never a traceback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from casbackup import serde
from casbackup.crypto.codec import DATA, TREE
from casbackup.model.snapshot import Snapshot
from casbackup.model.tree import DIR, FILE, Node, Tree
from tests.helpers import json_result, make_store, run_cli

# (a malformed node, the label verify names it by, words of the problem)
MALFORMED: list[tuple[Any, str, str]] = [
    ({"name": "str-name", "type": FILE}, "#0", "name is a string"),
    ({"name": b"big-mode", "type": FILE, "mode": 2**64 - 1}, "big-mode", "mode 1844674407"),
    ({"name": b"content-str", "type": FILE, "content": "abc"}, "content-str",
     "content is a string"),
    ({"name": b"dir-without-subtree", "type": DIR}, "dir-without-subtree", "has no subtree"),
    ({"name": b"dup", "type": "fifo"}, "dup", "is not after"),  # after the valid "dup"
    ({"name": b"link-nul", "type": "symlink", "target": b"/etc\0"}, "link-nul", "NUL"),
    ({"name": b"negative-uid", "type": FILE, "uid": -2}, "negative-uid", "uid -2"),
    ([b"not", "a", "map"], "#8", "is a list, not a map"),
    ({"name": b"slash/name", "type": FILE}, "slash/name", "'/'"),
]


def _crafted_store(tmp_path: Path) -> tuple[Path, str, str, bytes]:
    """A store with a sound snapshot and one whose /home holds every MALFORMED node
    among sound ones; returns (store, good id, bad id, the bad tree's id)."""
    path = tmp_path / "store"
    st = make_store(path, encryption="none")
    data = st.add_blob(DATA, b"hello\n").id
    ok = Node(b"ok.txt", FILE, mode=0o644, size=6, content=[data]).to_map()
    dup = Node(b"dup", FILE, mode=0o644, size=6, content=[data]).to_map()
    maps = [m for m, _, _ in MALFORMED]
    maps.insert(4, dup)  # the valid "dup" comes first, its malformed twin after it
    maps.append(ok)
    bad_tree = st.add_blob(TREE, serde.pack({"nodes": maps})).id
    good_tree = st.add_blob(TREE, Tree([Node.from_map(ok)]).encode()).id

    def snap(home: bytes, t: float) -> str:
        root = st.add_blob(TREE, Tree([Node(b"home", DIR, mode=0o755, subtree=home)]).encode())
        return st.save_snapshot(Snapshot(t, "h", "u", ["/home"], root.id, type="full"))

    good = snap(good_tree, time.time() - 10)
    bad = snap(bad_tree, time.time())
    st.close()
    return path, good, bad, bad_tree


def _no_traceback(r: Any) -> None:
    assert b"Traceback" not in r.stderr and b"Error:" not in r.stderr.replace(
        b"IntegrityError", b""), r.stderr


def test_verify_names_every_malformed_node_and_exits_13(tmp_path: Path) -> None:
    store, good, bad, bad_tree = _crafted_store(tmp_path)
    r = run_cli("verify", "--store", str(store), "--json")
    assert r.returncode == 13, r.stderr
    _no_traceback(r)
    rep = json_result(r.stdout)
    where = f"tree {bad_tree.hex()[:16]} (snapshot {bad[:8]}): node "
    for _, label, words in MALFORMED:
        assert any(p.startswith(where + label + ":") and words in p
                   for p in rep["problems"]), (label, rep["problems"])
    assert len(rep["problems"]) == len(MALFORMED)
    affected = {(a["snapshot"], a["path"]) for a in rep["affected"]}
    assert affected == {(bad, "/home/" + label) for _, label, _ in MALFORMED}
    # the text output says the same, one line each
    r = run_cli("verify", "--store", str(store))
    assert r.returncode == 13
    lines = r.stdout.decode().splitlines()
    assert f"affected: snapshot {bad[:8]} /home/big-mode" in lines
    assert sum(1 for ln in lines if ln.startswith("error: ")) == len(MALFORMED)


@pytest.mark.parametrize("cmd", [["ls", "-R", "{bad}"], ["ls", "{bad}", "/home"],
                                 ["stats", "{bad}"], ["stats"], ["diff", "{good}", "{bad}"],
                                 ["cat", "tree", "{bad_tree}"]])
def test_reading_commands_exit_13_with_one_line(tmp_path: Path, cmd: list[str]) -> None:
    store, good, bad, bad_tree = _crafted_store(tmp_path)
    args = [a.format(good=good, bad=bad, bad_tree=bad_tree.hex()) for a in cmd]
    r = run_cli(*args, "--store", str(store))
    assert r.returncode == 13, (r.stdout, r.stderr)
    _no_traceback(r)
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("casbackup: ")
    assert f"tree {bad_tree.hex()[:16]}" in err[0] and "node #0: name is a string" in err[0]


def test_a_sound_snapshot_in_the_same_store_still_lists(tmp_path: Path) -> None:
    store, good, _, _ = _crafted_store(tmp_path)
    r = run_cli("ls", "-R", good, "--store", str(store))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["/home", "/home/ok.txt"]
