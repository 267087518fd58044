"""forget: retention policy through the CLI on a real store, --dry-run, --json, by id,
--prune (issue #3, item 1). The policy itself is tested in tests/unit/ops."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from casbackup.model.snapshot import Snapshot
from casbackup.ops.gc import gc
from casbackup.store import Store
from tests.helpers import json_lines, json_result, make_store, open_test_store, run_cli
from tests.integration.history import assert_sound, build_history, stored_files

DAY = 86400.0
T0 = 1_700_000_000.0  # 2023-11-14


def _fake_history(st: Store, root: bytes) -> list[str]:
    """Snapshots of one tree at known times: 10 daily, then two hosts and a tag."""
    ids = []
    for d in range(10):
        ids.append(st.save_snapshot(Snapshot(T0 + d * DAY, "h1", "u", ["/data"], root)))
    ids.append(st.save_snapshot(Snapshot(T0 + 0.5 * DAY, "h2", "u", ["/data"], root)))
    ids.append(st.save_snapshot(Snapshot(T0 + 0.2 * DAY, "h1", "u", ["/data"], root,
                                         tags=["keep"])))
    return ids


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[str]]:
    p = tmp_path / "store"
    st = make_store(p)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    from casbackup.ops.backup import BackupOptions, backup

    root = backup(st, [str(src)], BackupOptions()).snapshot
    st.delete_snapshot(root.id)
    ids = _fake_history(st, root.tree)
    st.close()
    return p, ids


def _forget(store: Path, *args: str) -> dict[str, Any]:
    """forget's summary with its ``forget_group`` lines as ``groups``."""
    r = run_cli("forget", "--store", str(store), "--json", *args)
    assert r.returncode == 0, r.stderr
    return {**json_result(r.stdout), "groups": json_lines(r.stdout, "forget_group")}


def test_dry_run_shows_every_snapshot_with_its_rule(store: tuple[Path, list[str]]) -> None:
    p, ids = store
    before = stored_files(p, "snapshots")
    out = _forget(p, "--keep-last", "3", "--keep-tag", "keep", "--dry-run")
    assert stored_files(p, "snapshots") == before
    groups = out["groups"]
    assert isinstance(groups, list) and len(groups) == 2  # h1 and h2
    h1 = next(g for g in groups if g["host"] == "h1")
    rows = h1["snapshots"]
    assert [r["id"] for r in rows[:3]] == [ids[9], ids[8], ids[7]]
    assert all(r["keep"] and r["reasons"] == ["last"] for r in rows[:3])
    tagged = next(r for r in rows if r["id"] == ids[11])
    assert tagged["keep"] and tagged["reasons"] == ["tag:keep"]
    assert sum(not r["keep"] for r in rows) == 7
    h2 = next(g for g in groups if g["host"] == "h2")
    assert h2["snapshots"][0]["keep"]
    assert sorted(out["removed"]) == sorted(ids[:7])  # type: ignore[arg-type]
    r = run_cli("forget", "--store", str(p), "--keep-last", "3", "--dry-run")
    text = r.stdout.decode()
    assert "group: host h1; paths /data" in text and "remove" in text and "keep" in text
    assert "8 snapshot(s) to remove (dry run), 4 kept" in text


def test_policy_deletes_exactly_the_removed(store: tuple[Path, list[str]]) -> None:
    p, ids = store
    out = _forget(p, "--keep-daily", "4", "--keep-within", "1d")
    left = stored_files(p, "snapshots")
    assert left == set(out["kept"])  # type: ignore[arg-type]
    assert ids[9] in left and ids[6] in left and ids[5] not in left
    assert ids[10] in left  # the only h2 snapshot


def test_group_by_host_only_merges_paths(tmp_path: Path) -> None:
    p = tmp_path / "store"
    st = make_store(p)
    root = b"\0" * 32  # policy only: trees are never loaded
    a = st.save_snapshot(Snapshot(T0, "h", "u", ["/a"], root))
    b = st.save_snapshot(Snapshot(T0 + 1, "h", "u", ["/b"], root))
    st.close()
    out = _forget(p, "--keep-last", "1", "--group-by", "host", "--dry-run")
    assert len(out["groups"]) == 1  # type: ignore[arg-type]
    assert out["kept"] == [b] and out["removed"] == [a]
    out = _forget(p, "--keep-last", "1", "--dry-run")
    assert len(out["groups"]) == 2 and out["removed"] == []  # type: ignore[arg-type]


def test_host_filter_and_forget_by_id(store: tuple[Path, list[str]]) -> None:
    p, ids = store
    out = _forget(p, "--keep-last", "1", "--host", "h2")
    assert out["removed"] == []
    out = _forget(p, ids[0][:8], ids[1])
    assert sorted(out["removed"]) == sorted(ids[:2])  # type: ignore[arg-type]
    assert ids[0] not in stored_files(p, "snapshots")


def test_usage_errors_exit_2(store: tuple[Path, list[str]]) -> None:
    p, ids = store
    for args in (["--keep-last", "1", ids[0]], [], ["--keep-within", "3x"],
                 ["--keep-last", "1", "--group-by", "colour"], ["zz"]):
        r = run_cli("forget", "--store", str(p), *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.decode().startswith("casbackup: ")


def test_forget_prune_frees_data_and_keeps_the_rest_sound(tmp_path: Path) -> None:
    h = build_history(tmp_path)
    files = set(stored_files(h.store, "packs"))
    r = run_cli("forget", "--store", str(h.store), "--keep-last", "1", "--prune",
                "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    fg = json_result(r.stdout)
    dry = fg["prune"]
    assert len(fg["removed"]) == 2 and dry["dry_run"] and dry["freed_bytes"] > 0
    assert stored_files(h.store, "packs") == files
    assert len(stored_files(h.store, "snapshots")) == 3
    r = run_cli("forget", "--store", str(h.store), "--keep-last", "1", "--prune",
                "--retry-lock", "5s", "--json")
    assert r.returncode == 0, r.stderr
    real = json_result(r.stdout)["prune"]
    assert real["freed_bytes"] == pytest.approx(dry["freed_bytes"], abs=4096)
    assert real["snapshots"] == 1
    assert_sound(h, tmp_path, h.snapshots[-1:])
    st = open_test_store(h.store)
    assert gc(st).bytes_freed == 0
    st.close()
    assert os.path.isdir(h.store / "packs")
