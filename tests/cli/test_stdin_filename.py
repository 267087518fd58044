"""``backup --stdin --stdin-filename`` takes a plain file name only (issue #11): anything
restore would refuse as unsafe is a usage error (exit 2) before stdin is read, so every
``--stdin`` snapshot can be restored."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casbackup.errors import UsageError
from casbackup.ops.backup import BackupOptions, backup, stdin_filename
from casbackup.ops.restore import restore
from tests.helpers import cli_env, make_store, run_cli

BAD = ["backups/db.sql", "/var/db.sql", "../db.sql", "..", ".", "", "a\0b", "db.sql/"]


@pytest.mark.parametrize("name", BAD[:-2] + BAD[-1:])  # argv cannot carry a NUL
def test_cli_refuses_unsafe_names_before_reading_stdin(tmp_path: Path, name: str) -> None:
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0
    # stdin stays open and empty: a command that read it would hang, not exit
    p = subprocess.Popen([sys.executable, "-m", "casbackup", "backup", "--store", str(store),
                          "--stdin", "--stdin-filename", name], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    try:
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
        assert p.stdin is not None
        p.stdin.close()
    assert p.returncode == 2, err
    line = err.decode().strip()
    assert line.startswith("casbackup: --stdin-filename") and "\n" not in line
    assert not (store / "snapshots").exists() or not list((store / "snapshots").iterdir())


@given(st.text(max_size=12))
def test_stdin_filename_accepts_exactly_plain_names(name: str) -> None:
    plain = name not in ("", ".", "..") and "/" not in name and "\0" not in name
    try:
        assert stdin_filename(name).decode("utf-8", "surrogateescape") == name and plain
    except UsageError as e:
        assert not plain and "\n" not in str(e)


def test_plain_name_backs_up_and_restores(tmp_path: Path) -> None:
    st_ = make_store(tmp_path / "store")
    with pytest.raises(UsageError):
        backup(st_, [], BackupOptions(stdin=io.BytesIO(b"x"), stdin_filename="a/b"))
    res = backup(st_, [], BackupOptions(stdin=io.BytesIO(b"dump\n"), stdin_filename="db.sql"))
    assert res.snapshot.paths == ["/db.sql"]
    restore(st_, "latest", str(tmp_path / "out"))
    assert (tmp_path / "out" / "db.sql").read_bytes() == b"dump\n"
    r = run_cli("backup", "--store", str(tmp_path / "store"), "--stdin", "--stdin-filename",
                "pg.sql", input=b"sql")
    assert r.returncode == 0, r.stderr
