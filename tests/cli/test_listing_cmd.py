"""snapshots / list / ls / cat / key, through the real CLI (issue #2, items 2 and 7)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PASSWORD, cli_env, json_lines, json_result, run_cli


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path]:
    s = tmp_path / "store"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(1000))
    os.symlink("a.txt", src / "link")
    assert run_cli("init", "--store", str(s)).returncode == 0
    assert run_cli("backup", "--store", str(s), str(src), "--tag", "one").returncode == 0
    (src / "c.txt").write_text("gamma\n")
    assert run_cli("backup", "--store", str(s), str(src), "--type", "full").returncode == 0
    return s, src


def _json(*args: str) -> list[dict[str, Any]]:
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return json_lines(r.stdout)


def _cat(*args: str) -> Any:
    """The decoded object ``cat`` prints (inside its ``object`` line)."""
    r = run_cli("cat", *args)
    assert r.returncode == 0, r.stderr
    return json_result(r.stdout, "object")["object"]


def test_snapshots_and_list_backups_agree(store: tuple[Path, Path]) -> None:
    s, src = store
    snaps = _json("snapshots", "--store", str(s), "--json")
    assert isinstance(snaps, list) and len(snaps) == 2
    assert [x["message_type"] for x in snaps] == ["snapshot", "snapshot"]
    assert [x["backup_type"] for x in snaps] == ["incremental", "full"]
    assert snaps[0]["tags"] == ["one"] and snaps[1]["parent"] is None
    assert snaps[0]["paths"] == [str(src)]
    assert _json("list", "backups", "--store", str(s), "--json") == snaps
    tagged = _json("snapshots", "--store", str(s), "--json", "--tag", "one")
    assert [x["id"] for x in tagged] == [snaps[0]["id"]]  # type: ignore[index]
    text = run_cli("snapshots", "--store", str(s)).stdout.decode()
    assert snaps[0]["id"][:8] in text and "2 snapshot(s)" in text


def test_ls_lists_paths_types_and_targets(store: tuple[Path, Path]) -> None:
    s, src = store
    r = run_cli("ls", "--store", str(s), "latest", str(src), "--recursive", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["path"]: x for x in json_lines(r.stdout, "node")}
    assert set(rows) == {f"{src}/{n}" for n in ("a.txt", "c.txt", "link", "sub", "sub/b.bin")}
    assert rows[f"{src}/link"]["type"] == "symlink" and rows[f"{src}/link"]["target"] == "a.txt"
    assert rows[f"{src}/sub/b.bin"]["size"] == 1000
    first = _json("snapshots", "--store", str(s), "--json")[0]["id"][:8]  # type: ignore[index]
    r = run_cli("ls", "--store", str(s), first, str(src))
    assert f"{src}/c.txt" not in r.stdout.decode().split()  # c.txt came later
    r = run_cli("ls", "--store", str(s), "latest", str(src / "a.txt"))
    assert r.returncode == 2 and b"not a directory" in r.stderr


def test_cat_dumps_every_kind(store: tuple[Path, Path]) -> None:
    s, _ = store
    cfg = _cat("config", "--store", str(s))
    assert cfg["encryption"] == "aes-256-gcm" and cfg["chunker"]["algorithm"] == "fastcdc2020"  # type: ignore[index]
    snap = _cat("snapshot", "latest", "--store", str(s))
    tree = _cat("tree", snap["tree"], "--store", str(s))  # type: ignore[index]
    assert tree["id"] == snap["tree"]  # type: ignore[index]
    idx_name = next((s / "index").iterdir()).name
    idx = _cat("index", idx_name, "--store", str(s))
    pack = idx["packs"][0]  # type: ignore[index]
    blobs = _cat("pack", pack["id"], "--store", str(s))
    assert {b["id"] for b in blobs} == {b["id"] for b in pack["blobs"]}  # type: ignore[union-attr]
    keys = _cat("keys", "--store", str(s))
    assert len(keys) == 1 and "wrapped" not in keys[0]  # type: ignore[arg-type,index]
    assert run_cli("cat", "bogus", "--store", str(s)).returncode == 2


def test_key_add_passwd_remove(store: tuple[Path, Path], tmp_path: Path) -> None:
    s, _ = store
    newpw = tmp_path / "newpw"
    newpw.write_text("second password\n")
    r = run_cli("key", "add", "--store", str(s), "--new-password-file", str(newpw))
    assert r.returncode == 0, r.stderr
    keys = _json("key", "list", "--store", str(s), "--json")
    assert len(keys) == 2  # type: ignore[arg-type]
    second = cli_env(CASBACKUP_PASSWORD="second password")
    assert run_cli("snapshots", "--store", str(s), env=second).returncode == 0
    # change the first password: the old one stops working, the new one opens the store
    third = tmp_path / "third"
    third.write_text("third password")
    r = run_cli("key", "passwd", "--store", str(s), "--new-password-file", str(third))
    assert r.returncode == 0, r.stderr
    assert run_cli("snapshots", "--store", str(s)).returncode == 12  # PASSWORD is gone
    env3 = cli_env(CASBACKUP_PASSWORD="third password")
    assert run_cli("snapshots", "--store", str(s), env=env3).returncode == 0
    # remove the second key using the third password; the last key cannot be removed
    keys = _json("key", "list", "--store", str(s), "--json", "--password-file", str(third))
    other = [k["id"] for k in keys if not k["current"]]  # type: ignore[union-attr,index]
    r = run_cli("key", "remove", other[0][:12], "--store", str(s), env=env3)
    assert r.returncode == 0, r.stderr
    assert run_cli("snapshots", "--store", str(s), env=second).returncode == 12
    mine = [k["id"] for k in _json("key", "list", "--store", str(s), "--json",
                                   "--password-file", str(third))]  # type: ignore[union-attr,index]
    r = run_cli("key", "remove", mine[0], "--store", str(s), env=env3)
    assert r.returncode == 2 and b"last key" in r.stderr


def test_password_command_and_file(store: tuple[Path, Path], tmp_path: Path) -> None:
    s, _ = store
    env = cli_env()
    env.pop("CASBACKUP_PASSWORD")
    pf = tmp_path / "pw"
    pf.write_text(PASSWORD + "\n")
    assert run_cli("snapshots", "--store", str(s), "--password-file", str(pf),
                   env=env).returncode == 0
    assert run_cli("snapshots", "--store", str(s), "--password-command",
                   f"echo {PASSWORD}", env=env).returncode == 0
    env["CASBACKUP_STORE"] = str(s)
    env["CASBACKUP_PASSWORD_FILE"] = str(pf)
    assert run_cli("snapshots", env=env).returncode == 0
    r = run_cli("snapshots", "--store", str(s), env={**env, "CASBACKUP_PASSWORD_FILE": ""})
    assert r.returncode == 12 and b"no password given" in r.stderr  # no TTY: never hangs


def test_list_prints_each_object_name_as_the_store_holds_it(store: tuple[Path, Path]) -> None:
    """restic's ``list snapshots|packs|index|keys|locks``: one full name a line, the same
    set as the store's files of that kind (a local store: its directories)."""
    s, _src = store
    on_disk = {
        "snapshots": {p.name for p in (s / "snapshots").iterdir()},
        "packs": {p.name for p in (s / "packs").glob("*/*")},
        "index": {p.name for p in (s / "index").iterdir()},
        "keys": {p.name for p in (s / "keys").iterdir()},
        "locks": set(),
    }
    assert len(on_disk["snapshots"]) == 2 and on_disk["packs"], on_disk
    for kind, want in on_disk.items():
        r = run_cli("list", kind, "--store", str(s))
        assert r.returncode == 0, r.stderr
        assert set(r.stdout.decode().split()) == want, kind
    r = run_cli("list", "blobs", "--store", str(s))
    assert r.returncode == 2, r.stderr
