"""One rule for password files and commands, in the CLI and the daemon (passwords.py):
trailing line ends go, everything else is the password; the two readers never differ."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.cli.common import read_password
from casbackup.daemon.config import PasswordRef, load_config, resolve_password
from casbackup.daemon.jobs import run_job
from casbackup.errors import UsageError
from tests.helpers import PASSWORD, cli_env, run_cli

ENDINGS = st.sampled_from(["", "\n", "\r\n", "\n\n", "\r\n\r\n", "\n\r\n\n"])
PASSWORDS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


def _both(kind: str, value: str) -> tuple[str | Exception, str | Exception]:
    out: list[str | Exception] = []
    for read in (lambda: read_password(value if kind == "file" else None,
                                       value if kind == "command" else None),
                 lambda: resolve_password(PasswordRef(kind, value))):  # type: ignore[arg-type]
        try:
            out.append(read() or "")
        except UsageError as e:
            out.append(e)
    return out[0], out[1]


@settings(max_examples=150, deadline=None)
@given(PASSWORDS, ENDINGS)
def test_cli_and_daemon_read_a_password_file_alike(password: str, ending: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "pw")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(password + ending)
        cli, daemon = _both("file", path)
    expected = password.rstrip("\r\n")
    if expected:
        assert cli == daemon == expected
    else:  # only line ends: an error in both, naming the file
        assert isinstance(cli, UsageError) and isinstance(daemon, UsageError)
        assert "the password is empty" in str(cli) and "the password is empty" in str(daemon)
        assert path in str(cli) and path in str(daemon)


@settings(max_examples=20, deadline=None)
@given(PASSWORDS, ENDINGS, st.sampled_from([0, 3]))
def test_cli_and_daemon_run_a_password_command_alike(password: str, ending: str,
                                                     status: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "pw.py"
        script.write_text("import sys\nsys.stdout.buffer.write("
                          f"{(password + ending).encode()!r})\nsys.exit({status})\n")
        cli, daemon = _both("command", f"{sys.executable} {script}")
    if status or not password.rstrip("\r\n"):
        assert isinstance(cli, UsageError) and isinstance(daemon, UsageError)
        if status:
            assert "exited with status 3" in str(cli) and "exited with status 3" in str(daemon)
    else:
        assert cli == daemon == password.rstrip("\r\n")


def test_a_file_ending_in_a_blank_line_opens_the_store_in_cli_and_daemon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0  # password PASSWORD
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n\n")
    env = cli_env()
    env.pop("CASBACKUP_PASSWORD")
    r = run_cli("snapshots", "--store", str(store), "--password-file", str(pwfile), env=env)
    assert r.returncode == 0, r.stderr
    env["CASBACKUP_PASSWORD_FILE"] = str(pwfile)
    assert run_cli("snapshots", "--store", str(store), env=env).returncode == 0
    (tmp_path / "casbackup.yaml").write_text(
        f"stores:\n  s: {{url: {store}, password: {{file: {pwfile}}}}}\n"
        "jobs:\n  vf: {type: verify, cron: \"0 3 * * *\", store: s}\n")
    out = run_job(load_config(tmp_path / "casbackup.yaml"), "vf")
    assert out.result == "success", out.error
    pwfile.write_text(PASSWORD + " \n")  # a trailing space is part of the password: wrong
    r = run_cli("snapshots", "--store", str(store), "--password-file", str(pwfile), env=env)
    assert r.returncode == 12, r.stderr
    assert run_job(load_config(tmp_path / "casbackup.yaml"), "vf").exit_code == 12


def test_environment_passwords_follow_one_rule(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from casbackup.cli.peer import peer_password

    monkeypatch.setenv("CASBACKUP_PASSWORD", " spaced\n")  # verbatim: nothing is dropped
    monkeypatch.setenv("CB_TEST_PW", " spaced\n")
    assert read_password(None, None) == resolve_password(PasswordRef("env", "CB_TEST_PW"))
    monkeypatch.setenv("CASBACKUP_PASSWORD", "")
    monkeypatch.setenv("CB_TEST_PW", "")
    for read in (lambda: read_password(None, None),
                 lambda: resolve_password(PasswordRef("env", "CB_TEST_PW"))):
        with pytest.raises(UsageError, match="the password is empty"):
            read()
    # a second store's password: $CASBACKUP_FROM_PASSWORD, else its _FILE, else the main one
    pw = tmp_path / "from"
    pw.write_text("from-file\r\n")
    monkeypatch.setenv("CASBACKUP_PASSWORD", "main")
    monkeypatch.delenv("CASBACKUP_FROM_PASSWORD", raising=False)
    monkeypatch.delenv("CASBACKUP_FROM_PASSWORD_FILE", raising=False)
    assert peer_password(None, None, None, None)() == "main"
    monkeypatch.setenv("CASBACKUP_FROM_PASSWORD_FILE", str(pw))
    assert peer_password(None, None, None, None)() == "from-file"
    monkeypatch.setenv("CASBACKUP_FROM_PASSWORD", "")
    with pytest.raises(UsageError, match=r"password \$CASBACKUP_FROM_PASSWORD: the password"):
        peer_password(None, None, None, None)()
