"""The one reader of passwords from files, commands and the environment, for the CLI
and the daemon.

Rule (both): the password is the file's bytes, or the command's standard output, decoded
as UTF-8, without its trailing line ends: every ``\\n`` and ``\\r`` at the end goes, so
``pw``, ``pw\\n``, ``pw\\r\\n`` and a file ending in a blank line (``pw\\n\\n``) are all the
password ``pw``; spaces, tabs and anything before the end are part of it. (restic trims
all surrounding white space; casbackup keeps spaces because earlier versions did and
keys made with them must still open.) A password that is empty after this is an error.

An environment variable's value is the password verbatim (there is no line end to
drop); set but empty is an error too. The CLI's ``VAR`` falls back to the file
``VAR_FILE`` names (``CASBACKUP_PASSWORD[_FILE]``, ``CASBACKUP_FROM_PASSWORD[_FILE]``);
the daemon's ``{env: VAR}`` does not.

A command line is split like a shell would (``shlex``) but run without one, with stdin
from /dev/null and stderr passed through (its prompts and errors reach the user); it must
exit 0 within the timeout.

Invariants: errors are ``UsageError``s naming the source as ``label`` gives it (a path,
or a command's first word) and never the secret, nor a command's arguments, nor partial
output of a failed command (no exception chaining that would carry it).
"""

from __future__ import annotations

import os
import shlex
import subprocess

from .errors import UsageError


def strip_line_ends(text: str) -> str:
    return text.rstrip("\r\n")


def command_label(command: str) -> str:
    """A command's first word: what errors may show of it (its arguments may be secret)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    return words[0] if words else "(empty)"


def read_password_file(path: str, label: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"password {label}: {e.strerror or e}") from None
    return _password(data, label)


def run_password_command(command: str, label: str, timeout: float = 60.0) -> str:
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise UsageError(f"password {label}: cannot split the command line ({e})") from None
    if not argv:
        raise UsageError(f"password {label}: the command is empty")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:  # carries the partial output: do not chain it
        raise UsageError(f"password {label}: command timed out after {timeout:g}s") from None
    except OSError as e:
        raise UsageError(f"password {label}: {e.strerror or e}") from None
    if proc.returncode != 0:
        raise UsageError(f"password {label}: command exited with status {proc.returncode}")
    return _password(proc.stdout, label)


def read_password_env(var: str, label: str) -> str | None:
    """$VAR, or None when it is not set."""
    value = os.environ.get(var)
    if value is not None and not value:
        raise UsageError(f"password {label}: the password is empty")
    return value


def read_password_env_or_file(var: str) -> str | None:
    """$VAR, else the password in the file $VAR_FILE names; None when neither is set."""
    value = read_password_env(var, f"${var}")
    if value is None and (path := os.environ.get(var + "_FILE")):
        value = read_password_file(path, f"file {path}")
    return value


def _password(data: bytes, label: str) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:  # carries the bytes: do not chain it
        raise UsageError(f"password {label}: not valid UTF-8") from None
    value = strip_line_ends(text)
    if not value:
        raise UsageError(f"password {label}: the password is empty")
    return value
