"""Flip, truncate and delete pack / index / snapshot objects: verify names each one
(issue #2, item 8). Corruption is never reported as success."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casbackup.errors import IntegrityError
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from tests.helpers import json_result, make_store, run_cli


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(os.urandom(300_000 + i))
    (src / "small.txt").write_text("small file\n")
    st = make_store(tmp_path / "store", pack_size=1 << 20)
    backup(st, [str(src)], BackupOptions())
    (src / "later.txt").write_text("second snapshot\n")
    backup(st, [str(src)], BackupOptions())
    st.close()
    return tmp_path / "store"


def _objects(store: Path, prefix: str) -> list[Path]:
    return sorted(p for p in (store / prefix).rglob("*") if p.is_file())


def _data_pack(store: Path) -> Path:
    # the largest pack holds file data (tree packs are small)
    return max(_objects(store, "packs"), key=lambda p: p.stat().st_size)


def _verify(store: Path, *extra: str) -> tuple[int, dict[str, object]]:
    r = run_cli("verify", "--store", str(store), "--read-data", "--json", *extra)
    return r.returncode, json_result(r.stdout)


def test_clean_store_verifies(store_dir: Path) -> None:
    code, out = _verify(store_dir)
    assert code == 0 and out["ok"] is True and out["problems"] == []
    assert out["blobs_read"] > 0


def flip(p: Path, at: int) -> None:
    b = bytearray(p.read_bytes())
    b[at] ^= 0x40
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_pack_is_named_with_affected_files(store_dir: Path, damage: str) -> None:
    pack = _data_pack(store_dir)
    if damage == "flip":
        flip(pack, 1000)
    elif damage == "truncate":
        pack.write_bytes(pack.read_bytes()[:-100])
    else:
        pack.unlink()
    code, out = _verify(store_dir)
    assert code == 13
    assert any(pack.name in p for p in out["problems"]), out["problems"]  # type: ignore[union-attr]
    affected = out["affected"]
    named = {a["path"].split("/")[-1] for a in affected}  # type: ignore[attr-defined,index,union-attr]
    # the oracle: a file is affected exactly when restoring it alone fails (which files
    # share the damaged pack depends on how the savers' threads interleave into packs)
    src = store_dir.parent / "src"
    broken = set()
    for f in sorted(src.iterdir()):
        r = run_cli("restore", "--store", str(store_dir), "latest",
                    str(store_dir.parent / f"out-{f.name}"), "--include", str(f))
        assert r.returncode in (0, 13), r.stderr
        if r.returncode == 13:
            broken.add(f.name)
    assert named and named <= {f.name for f in src.iterdir()}
    if damage != "truncate":  # a pack of the wrong size is suspect whole: all its files
        assert named == broken  # are named, though the cut may hit only its trailer
    # both snapshots share the damaged data, so both are named
    assert len({a["snapshot"] for a in affected}) == 2  # type: ignore[index,union-attr]


def test_structure_check_without_read_data_catches_missing_pack(store_dir: Path) -> None:
    pack = _data_pack(store_dir)
    pack.unlink()
    r = run_cli("verify", "--store", str(store_dir))
    assert r.returncode == 13
    assert pack.name.encode() in r.stdout


def test_flipped_byte_is_caught_by_read_data_not_hidden(store_dir: Path) -> None:
    # flip inside a blob: structure looks fine, only reading the data can tell
    pack = _data_pack(store_dir)
    flip(pack, 10)
    assert run_cli("verify", "--store", str(store_dir)).returncode == 0  # structure intact
    code, _ = _verify(store_dir)
    assert code == 13


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_index_object_is_named(store_dir: Path, damage: str) -> None:
    idx = _objects(store_dir, "index")[0]
    if damage == "flip":
        flip(idx, 5)
    elif damage == "truncate":
        idx.write_bytes(idx.read_bytes()[:10])
    else:
        idx.unlink()
    code, out = _verify(store_dir)
    assert code == 13
    text = " ".join(out["problems"])  # type: ignore[arg-type]
    if damage == "delete":
        assert "not in the index" in text or "missing" in text
    else:
        assert idx.name in text


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_snapshot_is_named(store_dir: Path, damage: str) -> None:
    snap = _objects(store_dir, "snapshots")[0]
    if damage == "flip":
        flip(snap, 20)
    else:
        snap.write_bytes(snap.read_bytes()[:7])
    code, out = _verify(store_dir)
    assert code == 13
    assert any(snap.name in p for p in out["problems"])  # type: ignore[union-attr]


def test_restore_of_damaged_data_fails_loudly(store_dir: Path, tmp_path: Path) -> None:
    from tests.helpers import open_test_store

    flip(_data_pack(store_dir), 10)
    st = open_test_store(store_dir)
    with pytest.raises(IntegrityError):
        restore(st, "latest", str(tmp_path / "out"))
    r = run_cli("restore", "--store", str(store_dir), "latest", str(tmp_path / "out2"))
    assert r.returncode == 13
    assert b"casbackup: " in r.stderr and b"Traceback" not in r.stderr
