"""Where the daemon's config lives, and the password references it holds.

Invariants: a password is only ever a reference (``{env: VAR}``, ``{file: PATH}`` or
``{command: CMD}``); ``resolve_password`` is the only code that reads the environment,
another file or runs a command for a secret (through ``casbackup.passwords``, the
reader the CLI uses too), and its errors name the reference — never
the secret, nor a command's arguments, nor partial output of a failed command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from casbackup.errors import UsageError
from casbackup.passwords import (
    command_label,
    read_password_env,
    read_password_file,
    run_password_command,
)

CONFIG_ENV_VAR = "CASBACKUP_CONFIG"


@dataclass(frozen=True, slots=True)
class PasswordRef:
    kind: Literal["env", "file", "command"]
    value: str  # variable name, absolute path, or command line

    def __str__(self) -> str:  # names the reference, never a secret (nor a command's args)
        shown = command_label(self.value) if self.kind == "command" else self.value
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
    """The password ``ref`` points to (None for an unencrypted store). Files and commands
    are read by ``casbackup.passwords`` (the CLI's reader: trailing line ends go). Errors
    name ``ref``, never the secret."""
    if ref is None:
        return None
    if ref.kind == "file":
        return read_password_file(ref.value, str(ref))
    if ref.kind == "command":
        return run_password_command(ref.value, str(ref), timeout)
    value = read_password_env(ref.value, str(ref))
    if value is None:
        raise UsageError(f"password {ref}: environment variable is not set")
    return value
