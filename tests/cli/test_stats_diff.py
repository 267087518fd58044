"""stats and diff through the CLI on real stores (issue #3, item 6)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.diff import diff
from tests.helpers import json_lines, make_store, open_test_store, run_cli

KIB = 1024


def _json(*args: str) -> list[dict[str, Any]]:
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json_lines(r.stdout)


def _stats(*args: str) -> dict[str, Any]:
    (s,) = _json("stats", *args)
    assert s["message_type"] == "stats"
    return s


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Two snapshots of an unchanged source holding one duplicate file."""
    src = tmp_path / "src"
    src.mkdir()
    first = os.urandom(100 * KIB)
    (src / "r1").write_bytes(first)
    (src / "r2").write_bytes(os.urandom(100 * KIB))
    (src / "r3").write_bytes(os.urandom(100 * KIB))
    (src / "dup").write_bytes(first)
    (src / "text.txt").write_bytes(b"the same line of text again\n" * 1829)  # ~50 KiB
    st = make_store(tmp_path / "store")
    ids = [backup(st, [str(src)], BackupOptions()).snapshot.id for _ in range(2)]
    st.close()
    return tmp_path / "store", src, ids


def test_store_stats(two: tuple[Path, Path, list[str]]) -> None:
    store, src, ids = two
    size = sum(p.stat().st_size for p in src.iterdir())
    unique = size - 100 * KIB
    s = _stats("--store", str(store))
    assert s["snapshot_id"] is None and s["snapshots_count"] == 2
    assert s["total_file_count"] == 10 and s["total_size"] == 2 * size
    assert s["unique_bytes"] == unique and s["data_blobs"] == 4
    assert s["dedup_ratio"] == pytest.approx(2 * size / unique, rel=1e-3)
    assert 1.0 < s["compression_ratio"] < 1.5  # random data, one very compressible file
    assert s["stored_bytes"] < s["total_uncompressed_size"]
    # The root tree records the source's ancestors (/tmp, …) as they were: another process
    # creating a file in /tmp between the two backups gives the second its own tree pack.
    kinds = s["packs_by_kind"]
    assert set(kinds) == {"data", "tree"} and kinds["data"] == 1 and kinds["tree"] in (1, 2)
    assert s["packs"] == kinds["data"] + kinds["tree"]
    assert s["unreferenced_bytes"] == 0
    r = run_cli("stats", "--store", str(store))
    text = r.stdout.decode()
    assert "dedup ratio:" in text and "compression ratio:" in text and "packs:" in text


def test_snapshot_stats_and_unreferenced_after_forget(two: tuple[Path, Path, list[str]]) -> None:
    store, src, ids = two
    size = sum(p.stat().st_size for p in src.iterdir())
    s = _stats("--store", str(store), ids[0][:8])
    assert s["snapshot_id"] == ids[0] and s["snapshots_count"] == 1
    assert s["total_file_count"] == 5 and s["total_size"] == size
    assert s["dedup_ratio"] == pytest.approx(size / (size - 100 * KIB), rel=1e-3)
    (src / "r2").unlink()
    st = open_test_store(store)
    backup(st, [str(src)], BackupOptions())
    st.close()
    for sid in ids:
        assert run_cli("forget", "--store", str(store), sid).returncode == 0
    s = _stats("--store", str(store))
    assert s["unreferenced_bytes"] > 100 * KIB
    assert run_cli("gc", "--store", str(store), "--max-unused", "0").returncode == 0
    assert _stats("--store", str(store))["unreferenced_bytes"] == 0


def test_diff_kinds_of_change(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "same").mkdir()
    for i in range(5):
        (src / "same" / f"s{i}").write_text(f"unchanged {i}\n")
    (src / "a").write_text("old content\n")
    (src / "b").write_text("metadata only\n")
    (src / "d" / "c").write_text("to be removed\n")
    os.symlink("target-one", src / "l")
    st = make_store(tmp_path / "store")
    one = backup(st, [str(src)], BackupOptions()).snapshot.id
    (src / "a").write_text("new and longer content\n")
    os.chmod(src / "b", 0o600)
    (src / "d" / "c").unlink()
    (src / "d" / "e").write_text("added\n")
    (src / "n").mkdir()
    (src / "n" / "f").write_bytes(b"x" * 1000)
    os.unlink(src / "l")
    os.symlink("target-two", src / "l")
    two = backup(st, [str(src)], BackupOptions()).snapshot.id
    res = diff(st, one, two)
    st.close()
    base = str(src)
    # The source's ancestors (/tmp, …) are recorded as they were: other processes may
    # change their mtime between the two backups, which diff rightly reports.
    above = [c for c in res.changes if not c.path.startswith(base + "/")]
    assert all(c.change == "metadata" and base.startswith(c.path) for c in above), above
    got = {(c.path.removeprefix(base), c.change) for c in res.changes if c not in above}
    assert got == {("/a", "modified"), ("/b", "metadata"), ("/d/c", "removed"),
                   ("/d/e", "added"), ("/n", "added"), ("/n/f", "added"),
                   ("/l", "modified")}
    assert res.trees_skipped >= 1  # "same" was not walked

    out = _json("diff", "--store", str(tmp_path / "store"), one[:8], two)
    assert out[-1] == {"message_type": "summary", "source_snapshot": res.a.id,
                       "target_snapshot": res.b.id, "added": 3, "removed": 1,
                       "modified": 2, "metadata": 1 + len(above), "added_bytes": 1006,
                       "removed_bytes": 14, "trees_skipped": res.trees_skipped}
    shown = [c for c in out[:-1] if c["path"].startswith(base + "/")]
    assert len(out) - 1 - len(shown) == len(above)
    assert {(c["path"].removeprefix(base), c["modifier"]) for c in shown} == {
        ("/a", "M"), ("/b", "U"), ("/d/c", "-"), ("/d/e", "+"), ("/n", "+"),
        ("/n/f", "+"), ("/l", "M")}
    r = run_cli("diff", "--store", str(tmp_path / "store"), one, two)
    lines = r.stdout.decode().splitlines()
    assert f"+    {base}/n/" in lines and f"M    {base}/a" in lines
    assert f"U    {base}/b" in lines and f"-    {base}/d/c" in lines


def test_diff_of_a_snapshot_with_itself_is_empty(two: tuple[Path, Path, list[str]]) -> None:
    store, _, ids = two
    lines = _json("diff", "--store", str(store), ids[0], ids[1])
    assert [o["message_type"] for o in lines] == ["summary"], lines
    assert lines[0]["trees_skipped"] == 1


def test_unknown_snapshot_exits_2(two: tuple[Path, Path, list[str]]) -> None:
    store, _, ids = two
    assert run_cli("diff", "--store", str(store), ids[0], "ffff0000").returncode == 2
    assert run_cli("stats", "--store", str(store), "ffff0000").returncode == 2
