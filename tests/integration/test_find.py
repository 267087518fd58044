"""find (issue #14 point 4) in real stores: on random stores of shared subtrees (dedup's
DAGs, the same tree under different paths) and random patterns, ``find`` reports exactly
what a brute-force walk of every snapshot matches, grouped by snapshot, and loads each
distinct tree once; through the CLI: selection (--snapshot, SNAP:PATH, --host, --tag,
--path), --newest/--oldest, -i, --long, --json, and exit 4 when nothing matches."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.crypto.codec import DATA, TREE
from casbackup.model.snapshot import Snapshot
from casbackup.model.tree import DIR, FILE, Node, Tree
from casbackup.ops.find import find
from casbackup.ops.snapsel import SnapshotFilter, select
from casbackup.ops.treewalk import walk
from tests.helpers import json_lines, make_store, run_cli
from tests.unit.ops.test_find_patterns import GLOB, _ref

NAMES = st.sampled_from([b"a", b"b.c", b"ab", b"c", b".a", b"x.c"])


@st.composite
def stores(draw: st.DrawFn) -> tuple[list[list[tuple[bytes, str, int, int]]], list[int]]:
    """Trees 0..n-1 (tree i's directories point at trees < i) and snapshot roots."""
    trees: list[list[tuple[bytes, str, int, int]]] = []
    for i in range(draw(st.integers(1, 8))):
        nodes: list[tuple[bytes, str, int, int]] = []
        for name in draw(st.lists(NAMES, unique=True, max_size=4)):
            mtime = draw(st.integers(0, 9)) * 10**9
            if i and draw(st.booleans()):
                nodes.append((name, DIR, mtime, draw(st.integers(0, i - 1))))
            else:
                nodes.append((name, FILE, mtime, -1))
        trees.append(nodes)
    roots = draw(st.lists(st.integers(0, len(trees) - 1), min_size=1, max_size=5))
    return trees, roots


def _components(pat: str) -> list[str]:
    comps = [c for c in pat.split("/") if c]
    return comps if pat.startswith("/") else ["**", *comps]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stores(), st.lists(st.one_of(GLOB, st.builds("/".join, st.lists(
    st.one_of(GLOB, st.just("**")), min_size=2, max_size=3))), min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(0, 9)), st.one_of(st.none(), st.integers(0, 9)))
def test_find_is_a_brute_force_walk_loading_each_tree_once(
        shape: tuple[list[list[tuple[bytes, str, int, int]]], list[int]], patterns: list[str],
        newest: int | None, oldest: int | None) -> None:
    spec, roots = shape
    with tempfile.TemporaryDirectory() as tmp:
        s = make_store(Path(tmp) / "store", encryption="none")
        ids: list[bytes] = []
        for nodes in spec:
            tree = Tree([Node(name, t, mode=0o755, mtime_ns=m, size=len(name),
                              subtree=ids[sub] if t == DIR else None,
                              content=[s.add_blob(DATA, name).id] if t == FILE else None)
                         for name, t, m, sub in nodes])
            ids.append(s.add_blob(TREE, tree.encode()).id)
        for k, r in enumerate(roots):
            s.save_snapshot(Snapshot(1000.0 + k, "h", "u", ["/"], ids[r], type="full"))
        targets = select(s, [], SnapshotFilter())
        read: list[bytes] = []
        get_blob = s.get_blob

        def recording(bid: bytes) -> bytes:
            read.append(bid)
            return get_blob(bid)
        s.get_blob = recording  # type: ignore[method-assign,assignment]
        res = find(s, patterns, targets, newest_ns=None if newest is None else newest * 10**9,
                   oldest_ns=None if oldest is None else oldest * 10**9)
        assert set(read) <= set(ids) and len(read) == len(set(read))  # trees only, once

        expected, reachable = [], set()
        for snap, _ in targets:
            reachable.add(snap.tree)
            hits = []
            for e in walk(s.load_tree, snap.tree):
                if e.node.subtree is not None:
                    reachable.add(e.node.subtree)
                comps = [os.fsdecode(c) for c in e.path.split(b"/") if c]
                in_range = ((newest is None or e.node.mtime_ns <= newest * 10**9)
                            and (oldest is None or e.node.mtime_ns >= oldest * 10**9))
                if in_range and any(_ref(_components(p), comps) for p in patterns):
                    hits.append(e.path)
            if hits:
                expected.append((snap.id, hits))
        assert [(g.snapshot.id, [m.path for m in g.matches]) for g in res.groups] == expected
        assert res.trees_loaded == len(reachable) and res.searched == len(roots)
        assert res.errors == []
        s.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """Three snapshots of a source: tagged, of another host, and after changes."""
    tmp = tmp_path_factory.mktemp("find")
    s, src = tmp / "store", tmp / "src"
    (src / "work" / "deep").mkdir(parents=True)
    (src / "work" / "Main.C").write_text("int main;\n")
    (src / "work" / "deep" / "util.c").write_text("util\n")
    (src / "notes.txt").write_text("notes\n")
    os.utime(src / "notes.txt", (1_000_000_000, 1_000_000_000))  # 2001-09-09
    assert run_cli("init", "--store", str(s)).returncode == 0
    for args in (["--tag", "one", "--tag", "two"], ["--host", "other"], []):
        if not args:
            (src / "work" / "deep" / "util.c").unlink()
            (src / "work" / "new.c").write_text("new\n")
        r = run_cli("backup", "--store", str(s), str(src), *args)
        assert r.returncode == 0, r.stderr
    snaps = json_lines(run_cli("snapshots", "--store", str(s), "--json").stdout, "snapshot")
    return s, src, [x["id"] for x in snaps]


def _find(s: Path, *args: str) -> list[dict[str, object]]:
    r = run_cli("find", "--store", str(s), "--json", *args)
    assert r.returncode == 0, r.stderr
    return json_lines(r.stdout, "matches")


def _paths(groups: list[dict[str, object]]) -> list[tuple[str, list[str]]]:
    return [(str(g["snapshot_id"])[:8], [m["path"] for m in g["matches"]])  # type: ignore[attr-defined]
            for g in groups]


def test_find_groups_matches_by_snapshot(history: tuple[Path, Path, list[str]]) -> None:
    s, src, (one, other, last) = history
    w = f"{src}/work"
    assert _paths(_find(s, "*.c")) == [(one[:8], [f"{w}/deep/util.c"]),
                                       (other[:8], [f"{w}/deep/util.c"]),
                                       (last[:8], [f"{w}/new.c"])]
    assert _paths(_find(s, "*.c", "-i")) == [(one[:8], [f"{w}/Main.C", f"{w}/deep/util.c"]),
                                             (other[:8], [f"{w}/Main.C", f"{w}/deep/util.c"]),
                                             (last[:8], [f"{w}/Main.C", f"{w}/new.c"])]
    assert _paths(_find(s, "work/*.c", "--snapshot", last[:6])) == [(last[:8], [f"{w}/new.c"])]
    assert _paths(_find(s, "deep", "--host", "other")) == [(other[:8], [f"{w}/deep"])]
    assert _paths(_find(s, "*.txt", "--tag", "two", "--tag", "nope")) == [
        (one[:8], [f"{src}/notes.txt"])]
    assert len(_find(s, "*.txt", "--tag", "one,two", "--path", str(src))) == 1
    newest = _find(s, "*", "--snapshot", "latest", "--newest", "2001-09-10")
    assert _paths(newest) == [(last[:8], [f"{src}/notes.txt"])]
    oldest = _paths(_find(s, "*", "--snapshot", f"latest:{w}", "--oldest", "2002-01-01"))
    assert oldest == [(last[:8], [f"{w}/Main.C", f"{w}/deep", f"{w}/new.c"])]  # below work/
    m = _find(s, "notes.txt", "--snapshot", "latest")[0]["matches"][0]  # type: ignore[index]
    assert m["size"] == 6 and m["type"] == "file" and m["mtime"] == "2001-09-09T01:46:40Z"


def test_find_text_output_and_long(history: tuple[Path, Path, list[str]]) -> None:
    s, src, (one, _, last) = history
    r = run_cli("find", "--store", str(s), "new.c", "--long")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith(f"Found matching entries in snapshot {last[:8]} from ")
    assert lines[0].endswith("(host " + lines[0].rsplit("(host ", 1)[1])
    assert lines[1].startswith("-rw-r--r-- ") and lines[1].endswith(f"{src}/work/new.c")
    assert " 4 " in lines[1] and len(lines) == 2


@pytest.mark.parametrize(("args", "words"), [
    (["zzz*"], "no entry matches zzz* in 3 snapshot(s)"),
    (["/work/*.c"], "no entry matches /work/*.c in 3"),  # anchored at the root: no match
    (["*.c", "--host", "nobody"], "no snapshot matches --host nobody"),
    (["*.txt", "--tag", "one,nope"], "no snapshot matches --tag one,nope")])
def test_nothing_matched_exits_4(history: tuple[Path, Path, list[str]], args: list[str],
                                 words: str) -> None:
    s, _, _ = history
    r = run_cli("find", "--store", str(s), *args)
    assert r.returncode == 4, r.stderr
    assert r.stdout == b"" and r.stderr.decode().count("\n") == 1
    assert r.stderr.decode().startswith(f"casbackup: {words}")


@pytest.mark.parametrize(("args", "words"), [
    (["x", "--snapshot", "latest:/no/such"], "/no/such is not in snapshot"),
    (["x", "--newest", "yesterday"], "--newest yesterday: not a time"),
    (["x", "--snapshot", "ffffffff"], "no snapshot with id ffffffff"),
    (["/"], "names no entry"),
])
def test_bad_selection_exits_2(history: tuple[Path, Path, list[str]], args: list[str],
                               words: str) -> None:
    s, _, _ = history
    r = run_cli("find", "--store", str(s), *args)
    assert r.returncode == 2 and words in r.stderr.decode(), r.stderr


def test_an_unreadable_tree_is_named_and_the_rest_is_searched(tmp_path: Path) -> None:
    s = make_store(tmp_path / "store", encryption="none")
    leaf = s.add_blob(TREE, Tree([Node(b"x.c", FILE, mode=0o644)]).encode()).id
    lost = bytes(range(32))  # a subtree no pack holds
    root = s.add_blob(TREE, Tree([Node(b"gone", DIR, subtree=lost),
                                  Node(b"here", DIR, subtree=leaf)]).encode()).id
    s.save_snapshot(Snapshot(1.0, "h", "u", ["/"], root, type="full"))
    s.close()
    r = run_cli("find", "--store", str(tmp_path / "store"), "*.c")
    assert r.returncode == 13, r.stderr
    assert r.stdout.decode().splitlines()[1:] == ["/here/x.c"]
    lines = r.stderr.decode().splitlines()
    assert lines[0].startswith(f"casbackup: warning: tree {lost.hex()[:16]} could not be read")
    assert "entries below them were not searched" in lines[1] and len(lines) == 2
