"""One damaged snapshot object among many (real local store, real CLI): listing, parent
selection, ``restore latest`` and ``forget --keep-last`` warn once naming it and go on
without it; ``forget <id>`` and ``repair`` remove it."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.helpers import json_lines, json_result, restored_root, run_cli

DAMAGE = ["truncate", "flip", "empty", "other-object"]


def _damage(path: Path, how: str, other: Path, rng: random.Random) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[:rng.randrange(1, len(data))])
    elif how == "flip":
        i = rng.randrange(len(data))
        path.write_bytes(data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a valid sealed snapshot, but under the wrong name
        path.write_bytes(other.read_bytes())


def _ok(*args: str) -> str:
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def _ids(store: Path) -> list[str]:
    return [s["id"] for s in json_lines(_ok("snapshots", "--store", str(store), "--json"),
                                        "snapshot")]


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A store with five snapshots of one source; ``v.txt`` says which backup it was."""
    store, src = tmp_path / "store", tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(20000))
    _ok("init", "--store", str(store))
    for i in range(5):
        (src / "v.txt").write_text(f"version {i}")
        _ok("backup", "--store", str(store), str(src))
    ids = _ids(store)
    assert len(ids) == 5
    return store, src, ids


def _warning_about(stderr: bytes, name: str) -> None:
    lines = [ln for ln in stderr.decode().splitlines() if not ln.startswith("{")]  # --json status
    assert len(lines) == 1, lines
    assert lines[0].startswith("casbackup: warning: ") and f"snapshots/{name}" in lines[0]
    assert "damaged" in lines[0] and "Traceback" not in lines[0]


@pytest.mark.parametrize(("victim", "how"), [  # the newest (latest, parent) and one between
    (4, "truncate"), (2, "flip"), (4, "other-object"), (2, "empty")])
def test_a_damaged_snapshot_is_skipped_with_one_warning(
        history: tuple[Path, Path, list[str]], tmp_path: Path, how: str, victim: int) -> None:
    store, src, ids = history
    bad = ids[victim]
    rng = random.Random(f"{how}{victim}")
    _damage(store / "snapshots" / bad, how, store / "snapshots" / ids[0], rng)
    good = [i for i in ids if i != bad]
    newest = good[-1]

    r = run_cli("snapshots", "--store", str(store), "--json")
    assert r.returncode == 0, r.stderr
    assert [s["id"] for s in json_lines(r.stdout, "snapshot")] == good
    _warning_about(r.stderr, bad)

    out = tmp_path / "out"
    r = run_cli("restore", "--store", str(store), "latest", str(out))
    assert r.returncode == 0, r.stderr
    _warning_about(r.stderr, bad)
    assert (restored_root(out, src) / "v.txt").read_text() == f"version {ids.index(newest)}"

    (src / "v.txt").write_text("version 5")
    r = run_cli("backup", "--store", str(store), str(src), "--json")
    assert r.returncode == 0, r.stderr
    _warning_about(r.stderr, bad)
    summary = json_result(r.stdout)
    assert summary["parent"] == newest
    new = summary["snapshot_id"]

    r = run_cli("forget", "--store", str(store), "--keep-last", "2", "--json")
    assert r.returncode == 0, r.stderr
    _warning_about(r.stderr, bad)
    assert set(json_result(r.stdout)["kept"]) == {newest, new}
    assert sorted(p.name for p in (store / "snapshots").iterdir()) == sorted({newest, new, bad})

    r = run_cli("forget", "--store", str(store), bad[:8])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (store / "snapshots").iterdir()) == sorted({newest, new})
    r = run_cli("snapshots", "--store", str(store))
    assert r.returncode == 0 and r.stderr == b""


@pytest.mark.parametrize("seed", [1, 2])
def test_repair_reports_and_removes_damaged_snapshots(
        history: tuple[Path, Path, list[str]], seed: int) -> None:
    store, _, ids = history
    rng = random.Random(seed)
    bad = sorted(rng.sample(ids[1:], 2))
    for name, how in zip(bad, rng.sample(DAMAGE, 2), strict=True):
        _damage(store / "snapshots" / name, how, store / "snapshots" / ids[0], rng)
    assert run_cli("verify", "--store", str(store)).returncode == 13
    r = run_cli("repair", "--store", str(store))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for name in bad:
        assert f"snapshots/{name}: damaged" in out and "removed" in out
    assert "nothing to repair" not in out
    assert _ids(store) == [i for i in ids if i not in bad]
    assert run_cli("verify", "--store", str(store)).returncode == 0
    r = run_cli("repair", "--store", str(store))
    assert r.returncode == 0 and "nothing to repair" in r.stdout.decode()
