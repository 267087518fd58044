"""``backup --stdin-from-command CMD`` (real processes): CMD's stdout becomes the snapshot
only when CMD exits 0; otherwise exit 1, one line naming the status, nothing committed."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    assert run_cli("init", "--store", str(s)).returncode == 0
    return s


def _snapshots(store: Path) -> list[Path]:
    d = store / "snapshots"
    return sorted(d.iterdir()) if d.exists() else []


def test_the_output_of_a_command_that_succeeds_is_committed(store: Path, tmp_path: Path) -> None:
    gen = ("import hashlib, sys\n"
           "for i in range(300):\n"
           "    sys.stdout.buffer.write(hashlib.sha256(str(i).encode()).digest() * 512)\n")
    expected = b"".join(hashlib.sha256(str(i).encode()).digest() * 512 for i in range(300))
    r = run_cli("backup", "--store", str(store), "--stdin-from-command",
                f"{sys.executable} -c '{gen}'", "--stdin-filename", "dump.bin")
    assert r.returncode == 0, r.stderr
    assert len(_snapshots(store)) == 1
    out = tmp_path / "out"
    assert run_cli("restore", "--store", str(store), "latest", str(out)).returncode == 0
    assert (out / "dump.bin").read_bytes() == expected


@pytest.mark.parametrize(("command", "line"), [
    ("sh -c 'echo partial; exit 3'", "--stdin-from-command sh exited with status 3"),
    ("sh -c 'echo partial; kill -9 $$'", "--stdin-from-command sh was killed by signal 9"),
    ("false", "--stdin-from-command false exited with status 1"),
])
def test_a_failing_command_commits_nothing(store: Path, command: str, line: str) -> None:
    r = run_cli("backup", "--store", str(store), "--stdin-from-command", command)
    assert r.returncode == 1
    assert r.stderr.decode().strip().splitlines() == [
        f"casbackup: {line}; no snapshot was written"]
    assert _snapshots(store) == []
    assert list((store / "locks").iterdir()) == []


@pytest.mark.parametrize(("args", "needle"), [
    (["--stdin-from-command", "/no/such/dumper --password=hunter2"], "No such file"),
    (["--stdin-from-command", ""], "the command is empty"),
    (["--stdin-from-command", "sh -c 'unclosed"], "cannot split"),
    (["--stdin-from-command", "true", "/etc"], "not both"),
])
def test_bad_commands_are_usage_errors(store: Path, args: list[str], needle: str) -> None:
    r = run_cli("backup", "--store", str(store), *args)
    assert r.returncode == 2, r.stderr
    (err,) = r.stderr.decode().strip().splitlines()
    assert needle in err and "hunter2" not in err and "Traceback" not in err
    assert _snapshots(store) == []
