"""`key passwd` / `key add` take the new passphrase from a prompt (twice, must match),
`--new-password-file` or CASBACKUP_NEW_PASSWORD -- never from the current password's
sources (issue #11: with CASBACKUP_PASSWORD_FILE exported the new key got the old
password). Without a terminal and without a new-password source: exit 2, nothing changed."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import PASSWORD, cli_env, run_cli


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    assert run_cli("init", "--store", str(s)).returncode == 0
    return s


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    p = tmp_path / "current.pw"
    p.write_text(PASSWORD + "\n")
    return p


def _env_file_only(pwfile: Path, **extra: str) -> dict[str, str]:
    env = cli_env(CASBACKUP_PASSWORD_FILE=str(pwfile))
    env.pop("CASBACKUP_PASSWORD")
    env.pop("CASBACKUP_NEW_PASSWORD", None)
    env.update(extra)
    return env


def _opens(store: Path, password: str) -> int:
    return run_cli("snapshots", "--store", str(store),
                   env=cli_env(CASBACKUP_PASSWORD=password)).returncode


def _keys(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (store / "keys").iterdir()}


@pytest.mark.parametrize("command", ["passwd", "add"])
@pytest.mark.parametrize("current", ["env-file", "password-file", "env"])
def test_no_new_password_source_and_no_terminal_is_usage_error(
        store: Path, pwfile: Path, command: str, current: str) -> None:
    before = _keys(store)
    env, args = _env_file_only(pwfile), []
    if current == "password-file":
        env.pop("CASBACKUP_PASSWORD_FILE")
        args = ["--password-file", str(pwfile)]
    elif current == "env":
        env.pop("CASBACKUP_PASSWORD_FILE")
        env["CASBACKUP_PASSWORD"] = PASSWORD
    r = run_cli("key", command, "--store", str(store), *args, env=env, input=b"")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "new password" in lines[0]
    assert _keys(store) == before


@pytest.mark.parametrize("source", ["env", "file"])
def test_new_password_from_env_or_file_not_from_the_current_sources(
        store: Path, pwfile: Path, tmp_path: Path, source: str) -> None:
    newpw = "a brand new passphrase"
    args: list[str] = []
    if source == "env":
        env = _env_file_only(pwfile, CASBACKUP_NEW_PASSWORD=newpw)
    else:
        env = _env_file_only(pwfile)
        (tmp_path / "new.pw").write_text(newpw + "\n")
        args = ["--new-password-file", str(tmp_path / "new.pw")]
    r = run_cli("key", "add", "--store", str(store), *args, env=env, input=b"")
    assert r.returncode == 0, r.stderr
    assert len(_keys(store)) == 2
    assert _opens(store, newpw) == 0 and _opens(store, PASSWORD) == 0
    other = "yet another passphrase"
    env["CASBACKUP_NEW_PASSWORD"] = other
    args = []
    r = run_cli("key", "passwd", "--store", str(store), env=env, input=b"")
    assert r.returncode == 0, r.stderr
    assert _opens(store, other) == 0
    assert _opens(store, PASSWORD) == 12  # the old passphrase's key is gone
    assert _opens(store, newpw) == 0  # `key add`'s key is untouched


def test_empty_new_password_is_refused(store: Path, pwfile: Path) -> None:
    before = _keys(store)
    env = _env_file_only(pwfile, CASBACKUP_NEW_PASSWORD="")
    r = run_cli("key", "passwd", "--store", str(store), env=env, input=b"")
    assert r.returncode == 2 and b"empty" in r.stderr
    assert _keys(store) == before


def _pty_run(args: list[str], env: dict[str, str], answers: list[tuple[bytes, bytes]],
             timeout: float = 60) -> tuple[int, bytes]:
    """Run casbackup on a new pty; for each (prompt, reply) wait for PROMPT, then type
    REPLY. Returns (exit code, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal and stdin/stdout/stderr
        try:
            os.execve(sys.executable, [sys.executable, "-m", "casbackup", *args], env)
        finally:
            os._exit(127)
    seen = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)
    try:
        while True:
            if pending and pending[0][0] in seen:
                prompt, reply = pending.pop(0)
                seen = seen.replace(prompt, b"<" + prompt.strip(b": ") + b">", 1)
                os.write(fd, reply)
            r, _, _ = select.select([fd], [], [], 1)
            if time.monotonic() > deadline:
                raise AssertionError(f"pty session stalled: {seen!r}")
            if not r:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert not pending, f"prompts never shown: {pending} in {seen!r}"
    return os.waitstatus_to_exitcode(status), seen


@pytest.mark.parametrize("command", ["passwd", "add"])
def test_new_password_prompted_twice_on_a_terminal_even_with_a_password_file(
        store: Path, pwfile: Path, command: str) -> None:
    newpw = b"typed at the prompt"
    code, screen = _pty_run(
        ["key", command, "--store", str(store)], _env_file_only(pwfile),
        [(b"New password: ", newpw + b"\n"), (b"Repeat for confirmation: ", b"different\n"),
         (b"New password: ", newpw + b"\n"), (b"Repeat for confirmation: ", newpw + b"\n")])
    assert code == 0, screen
    assert b"do not match" in screen
    assert newpw not in screen  # hidden input
    assert _opens(store, newpw.decode()) == 0
    assert _opens(store, PASSWORD) == (12 if command == "passwd" else 0)
