"""Snapshot selection everywhere (issue #14 point 3, issue #13 point 2: one resolver):
``latest`` and id prefixes combine with ``--host``/``--tag``/``--path`` on restore, ls,
dump, diff, find, stats, sync and forget by id, through the real CLI against real stores
on disk. A filter that leaves nothing is one line and exit 4, and changes nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import json_lines, json_result, run_cli

NAMES = ("one", "two", "three")  # made by hosts a (tag t), b, a: latest is three


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    tmp = tmp_path_factory.mktemp("selall")
    store, src = tmp / "store", tmp / "src"
    src.mkdir()
    assert run_cli("init", "--store", str(store)).returncode == 0
    ids = []
    for i, (name, args) in enumerate(zip(NAMES, (["--host", "a", "--tag", "t"],
                                                  ["--host", "b"], ["--host", "a"]),
                                         strict=True)):
        for old in src.iterdir():
            old.unlink()
        (src / name).write_text(name)
        r = run_cli("backup", "--store", str(store), str(src), *args, "--json",
                    "--time", f"2026-01-0{i + 1} 10:00:00")
        assert r.returncode == 0, r.stderr
        ids.append(json_result(r.stdout)["snapshot_id"])
    return store, src, ids


def _ok(*args: str) -> subprocess.CompletedProcess[bytes]:
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return r


def _nothing(*args: str, words: str) -> None:
    r = run_cli(*args)
    err = r.stderr.decode()
    assert r.returncode == 4, err
    assert err.count("\n") == 1 and err.startswith("casbackup: ") and words in err, err


def _tree(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): f.read_bytes() for f in p.rglob("*") if f.is_file()}


def test_restore(hist: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    store, src, ids = hist
    _ok("restore", "--store", str(store), "latest", str(tmp_path / "b"), "--host", "b")
    assert os.listdir(tmp_path / "b" / str(src).lstrip("/")) == ["two"]
    _ok("restore", "--store", str(store), "latest", str(tmp_path / "t"), "--tag", "t")
    assert os.listdir(tmp_path / "t" / str(src).lstrip("/")) == ["one"]
    _nothing("restore", "--store", str(store), "latest", str(tmp_path / "x"), "--host", "c",
             words="no snapshot matches --host c")
    _nothing("restore", "--store", str(store), ids[0][:8], str(tmp_path / "y"), "--host", "b",
             words=f"snapshot {ids[0][:8]} does not match --host b")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_ls(hist: tuple[Path, Path, list[str]]) -> None:
    store, src, ids = hist
    out = _ok("ls", "--store", str(store), "latest", str(src), "--host", "b").stdout.decode()
    assert out.split() == [f"{src}/two"]
    out = _ok("ls", "--store", str(store), "latest", str(src), "--path", str(src) + "/",
              "--tag", "nope", "--tag", "t").stdout.decode()
    assert out.split() == [f"{src}/one"]
    _nothing("ls", "--store", str(store), "latest", "--path", "/elsewhere",
             words="no snapshot matches --path /elsewhere")
    _nothing("ls", "--store", str(store), ids[1][:6], "--host", "a",
             words=f"snapshot {ids[1][:8]} does not match --host a")


def test_dump(hist: tuple[Path, Path, list[str]]) -> None:
    store, src, ids = hist
    r = _ok("dump", "--store", str(store), "latest", f"{src}/one", "--host", "a", "--tag", "t")
    assert r.stdout == b"one"
    _nothing("dump", "--store", str(store), ids[2], f"{src}/three", "--tag", "t",
             words=f"snapshot {ids[2][:8]} does not match --tag t")


def test_diff(hist: tuple[Path, Path, list[str]]) -> None:
    store, _, ids = hist
    r = _ok("diff", "--store", str(store), ids[0][:8], "latest", "--host", "a", "--json")
    out = json_result(r.stdout)
    assert (out["source_snapshot"], out["target_snapshot"]) == (ids[0], ids[2])
    _nothing("diff", "--store", str(store), ids[1][:8], "latest", "--host", "a",
             words=f"snapshot {ids[1][:8]} does not match --host a")


def test_find(hist: tuple[Path, Path, list[str]]) -> None:
    store, _, ids = hist
    r = _ok("find", "--store", str(store), "two", "three", "--host", "a", "--host", "b",
            "--json")
    assert [(g["snapshot_id"], len(g["matches"])) for g in json_lines(r.stdout, "matches")
            ] == [(ids[1], 1), (ids[2], 1)]
    r = _ok("find", "--store", str(store), "*", "--snapshot", "latest", "--host", "b",
            "--json")
    assert [g["snapshot_id"] for g in json_lines(r.stdout, "matches")] == [ids[1]]
    _nothing("find", "--store", str(store), "*", "--snapshot", "latest", "--host", "c",
             words="no snapshot matches --host c")


def test_stats(hist: tuple[Path, Path, list[str]]) -> None:
    store, _, ids = hist
    r = _ok("stats", "--store", str(store), "latest", "--host", "b", "--json")
    assert json_result(r.stdout, "stats")["snapshot_id"] == ids[1]
    r = _ok("stats", "--store", str(store), "--host", "a", "--json")
    assert json_result(r.stdout, "stats")["snapshots_count"] == 2
    _nothing("stats", "--store", str(store), "--tag", "nope",
             words="no snapshot matches --tag nope")


def test_sync(hist: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    store, _, ids = hist
    dst = tmp_path / "dst"
    _ok("init", "--store", str(dst), "--from", str(store))
    _nothing("sync", str(store), str(dst), "--host", "c",
             words="no snapshot matches --host c; nothing was copied")
    _nothing("sync", str(store), str(dst), ids[0][:8], "--host", "b",
             words=f"snapshot {ids[0][:8]} does not match --host b")
    assert not (dst / "snapshots").exists() or not os.listdir(dst / "snapshots")
    r = _ok("sync", str(store), str(dst), "latest", "--host", "a", "--json")
    assert [c["source_id"] for c in json_lines(r.stdout, "copied")] == [ids[2]]


def test_forget_by_id(hist: tuple[Path, Path, list[str]]) -> None:
    store, _, ids = hist
    before = sorted(os.listdir(store / "snapshots"))
    _nothing("forget", "--store", str(store), ids[1][:8], ids[0][:8], "--host", "b",
             words=f"snapshot {ids[0][:8]} does not match --host b; nothing was forgotten")
    assert sorted(os.listdir(store / "snapshots")) == before
    r = _ok("forget", "--store", str(store), ids[1][:8], "--host", "b", "-n", "--json")
    assert json_result(r.stdout)["removed"] == [ids[1]]
    assert sorted(os.listdir(store / "snapshots")) == before  # a dry run


@pytest.mark.parametrize("other", [None, "keep", "below"])
def test_restore_include_matching_nothing_is_exit_4(
        hist: tuple[Path, Path, list[str]], tmp_path: Path, other: str | None) -> None:
    """An ``--include`` that matches nothing in the snapshot is never silent success:
    alone, exit 4 with one line and the target never made; beside a pattern that matches
    (the snapshot's file, or a pattern below another one's match), what matches is
    restored and the command still ends with exit 4 naming only the unmatched one."""
    store, src, _ = hist
    out = tmp_path / "out"
    miss = f"{src}/nope-*"
    args = ["restore", "--store", str(store), "latest", str(out), "--include", miss]
    if other is None:
        _nothing(*args, words=f"--include {miss} matched nothing")
        assert not out.exists()
        return
    hit = f"{src}/three"
    args += ["--include", str(src) if other == "below" else hit]
    if other == "below":
        args += ["--include", hit]  # matched only inside the match of the one before
    _nothing(*args, words=f"--include {miss} matched nothing")
    assert _tree(out / str(src).lstrip("/")) == {"three": b"three"}
    fine = args[:4] + [str(tmp_path / "ok")] + args[7:]  # the same without the unmatched
    ok = run_cli(*fine)
    assert ok.returncode == 0, ok.stderr
