"""Bad input gets one clear line, the exit code the README documents, and changes nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import cli_env, run_cli


def _tree_bytes(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    assert run_cli("init", "--store", str(s)).returncode == 0
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    assert run_cli("backup", "--store", str(s), str(src)).returncode == 0
    return s


def _one_line_error(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("casbackup: ")
    return lines[0]


def test_missing_store_exits_10(tmp_path: Path) -> None:
    r = run_cli("snapshots", "--store", str(tmp_path / "nope"))
    assert r.returncode == 10
    assert "no casbackup store" in _one_line_error(r.stderr)
    assert not (tmp_path / "nope").exists()


def test_directory_that_is_not_a_store_exits_10(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    (d / "config").write_text("not msgpack at all: just text")
    before = _tree_bytes(d)
    r = run_cli("backup", "--store", str(d), str(d))
    assert r.returncode == 10
    _one_line_error(r.stderr)
    assert _tree_bytes(d) == before


def test_wrong_password_exits_12_and_changes_nothing(store: Path, tmp_path: Path) -> None:
    before = _tree_bytes(store)
    r = run_cli("backup", "--store", str(store), str(tmp_path / "src"),
                env=cli_env(CASBACKUP_PASSWORD="wrong"))
    assert r.returncode == 12
    assert "wrong password" in _one_line_error(r.stderr)
    assert _tree_bytes(store) == before


def test_no_store_given_is_usage_error(tmp_path: Path) -> None:
    r = run_cli("snapshots")
    assert r.returncode == 2
    assert "no store given" in _one_line_error(r.stderr)


@pytest.mark.parametrize("ref,msg", [("ffffffff", "no snapshot with id"),
                                     ("zz", "not a hex id"), ("ab", "4+ digits")])
def test_unknown_snapshot_exits_2(store: Path, tmp_path: Path, ref: str, msg: str) -> None:
    r = run_cli("restore", "--store", str(store), ref, str(tmp_path / "out"))
    assert r.returncode == 2
    assert msg in _one_line_error(r.stderr)
    assert not (tmp_path / "out").exists()


def test_ambiguous_snapshot_prefix_exits_2(store: Path, tmp_path: Path) -> None:
    # make snapshots until two share a first hex digit, then use that digit x4? Ids are
    # hashes: craft ambiguity by copying a snapshot object under a sibling name instead.
    snaps = sorted((store / "snapshots").iterdir())
    ids = [p.name for p in snaps]
    twin = ids[0][:4] + ("0" if ids[0][4] != "0" else "1") + ids[0][5:]
    shutil.copy(snaps[0], store / "snapshots" / twin)
    r = run_cli("ls", "--store", str(store), ids[0][:4])
    assert r.returncode == 2
    assert "ambiguous" in _one_line_error(r.stderr)


def test_nonexistent_source_exits_2_and_writes_nothing(store: Path, tmp_path: Path) -> None:
    before = _tree_bytes(store)
    r = run_cli("backup", "--store", str(store), str(tmp_path / "src"), str(tmp_path / "ghost"))
    assert r.returncode == 2
    assert "does not exist" in _one_line_error(r.stderr)
    assert _tree_bytes(store) == before


def test_init_twice_refuses(store: Path) -> None:
    before = _tree_bytes(store)
    r = run_cli("init", "--store", str(store))
    assert r.returncode == 2
    assert "already exists" in _one_line_error(r.stderr)
    assert _tree_bytes(store) == before


def test_unreadable_file_warns_continues_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from casbackup.cli.app import main
    from casbackup.ops import archiver

    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("readable")
    (src / "secret.txt").write_text("no access")
    (src / "locked").mkdir()
    (src / "locked" / "inner").write_text("x")
    if os.geteuid() != 0:
        (src / "secret.txt").chmod(0o000)
        (src / "locked").chmod(0o000)
    else:  # root reads everything: make the same two calls fail as they would for a user
        real_open = os.open

        def deny(path: object, *a: object, **kw: object) -> int:
            if path in (b"secret.txt", b"locked"):
                raise PermissionError(13, "Permission denied", path)
            return real_open(path, *a, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(archiver.os, "open", deny)
    monkeypatch.setenv("CASBACKUP_PASSWORD", "pw")
    store = str(tmp_path / "store")

    def run(*args: str) -> int:
        with pytest.raises(SystemExit) as e:
            main([*args])
            raise SystemExit(0)
        return int(e.value.code or 0)

    assert run("init", "--store", store) == 0
    capsys.readouterr()
    assert run("backup", "--store", store, str(src)) == 3
    out = capsys.readouterr()
    assert "secret.txt" in out.err and "locked" in out.err
    assert "could not be read" in out.err
    assert run("ls", "--store", store, "latest", str(src)) == 0
    names = capsys.readouterr().out.split()
    assert str(src / "ok.txt") in names
    assert str(src / "secret.txt") not in names


@pytest.mark.parametrize("args", [["nosuch"], ["backup", "--no-such-option"],
                                  ["restore"], ["verify", "--read-data-subset"]])
def test_usage_errors_exit_2_without_traceback(args: list[str]) -> None:
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert b"Traceback" not in r.stderr and b"Error" in r.stderr
