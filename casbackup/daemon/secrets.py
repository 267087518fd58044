"""Where the daemon's config lives, and the password references it holds.

Invariants: a password is only ever a reference (``{env: VAR}``, ``{file: PATH}`` or
``{command: CMD}``); ``resolve_password`` is the only code that reads the environment,
another file or runs a command for a secret, and its errors name the reference — never
the secret, nor a command's arguments, nor partial output of a failed command.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from casbackup.errors import UsageError

CONFIG_ENV_VAR = "CASBACKUP_CONFIG"


@dataclass(frozen=True, slots=True)
class PasswordRef:
    kind: Literal["env", "file", "command"]
    value: str  # variable name, absolute path, or command line

    def __str__(self) -> str:  # names the reference, never a secret (nor a command's args)
        shown = shlex.split(self.value)[0] if self.kind == "command" else self.value
        return f"{self.kind}:{shown}"



def find_config_path(explicit: str | None = None) -> Path:
    """``explicit``, else ``$CASBACKUP_CONFIG``, else ``$XDG_CONFIG_HOME`` (or
    ``~/.config``) ``/casbackup/casbackup.yaml``. The file need not exist."""
    for candidate in (explicit, os.environ.get(CONFIG_ENV_VAR)):
        if candidate:
            return Path(candidate).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "casbackup" / "casbackup.yaml"


def resolve_password(ref: PasswordRef | None, timeout: float = 60.0) -> str | None:
    """The password ``ref`` points to (None for an unencrypted store). A file's or a
    command's output loses one trailing newline. Errors name ``ref``, never the secret."""
    if ref is None:
        return None
    if ref.kind == "env":
        value = os.environ.get(ref.value)
        if value is None:
            raise UsageError(f"password {ref}: environment variable is not set")
    else:
        value = _read_secret(ref, timeout).removesuffix("\n").removesuffix("\r")
    if not value:
        raise UsageError(f"password {ref}: the password is empty")
    return value


def _read_secret(ref: PasswordRef, timeout: float) -> str:
    try:
        if ref.kind == "file":
            data = Path(ref.value).read_bytes()
        else:
            proc = subprocess.run(
                shlex.split(ref.value), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                timeout=timeout, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise UsageError(f"password {ref}: command exited with status {proc.returncode}")
            data = proc.stdout
    except subprocess.TimeoutExpired:  # carries the partial output: do not chain it
        raise UsageError(f"password {ref}: command timed out after {timeout:g}s") from None
    except OSError as e:
        raise UsageError(f"password {ref}: {e.strerror or e}") from e
    try:
        return data.decode()
    except UnicodeDecodeError:  # carries the bytes: do not chain it
        raise UsageError(f"password {ref}: not valid UTF-8") from None
