"""A local store inside a source directory is left out of the backup, with one warning
line naming it; a source inside the store is a usage error (real CLI, real stores)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import restored_root, run_cli, tree_state


def test_the_store_inside_a_source_is_left_out_with_one_warning(tmp_path: Path) -> None:
    src = tmp_path / "home"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_bytes(os.urandom(10000))
    (src / "b.txt").write_text("b")
    store = src / "backups" / "store"  # two levels down, next to data that is kept
    (src / "backups").mkdir()
    (src / "backups" / "notes.txt").write_text("kept")
    assert run_cli("init", "--store", str(store)).returncode == 0
    expected = {k: v for k, v in tree_state(src).items()
                if not k.startswith(b"backups/store")}
    for _ in range(2):  # the second backup would otherwise store the first's packs
        r = run_cli("backup", "--store", str(store), str(src))
        assert r.returncode == 0, r.stderr
        assert r.stderr.decode().strip().splitlines() == [
            f"casbackup: warning: {store}: is the store being written to: left out"]
    out = tmp_path / "out"
    assert run_cli("restore", "--store", str(store), "latest", str(out)).returncode == 0
    got = tree_state(restored_root(out, src))
    assert set(got) == set(expected)
    assert got[b"backups/notes.txt"][6] == expected[b"backups/notes.txt"][6]


def test_a_source_inside_the_store_is_a_usage_error(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0
    for src in (store, store / "keys"):
        r = run_cli("backup", "--store", str(store), str(src))
        assert r.returncode == 2
        (line,) = r.stderr.decode().strip().splitlines()
        assert line == f"casbackup: source path {src} is inside the store {store}"
    assert not (store / "snapshots").exists()
