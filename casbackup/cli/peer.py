"""Options and password sources for a second store: ``init --from``, ``sync SRC DST``,
``watch --sync-to``.

Invariant: the other store's password comes from exactly one source, in this order:
``--from-password-file``, ``--from-password-command``, ``$CASBACKUP_FROM_PASSWORD``,
``$CASBACKUP_FROM_PASSWORD_FILE``, then the main store's sources (the same password);
like every password it never reaches a log, an error or JSON. A wrong password is
reported naming the store it failed for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from ..errors import WrongPassword
from ..passwords import read_password_env_or_file
from ..store import CacheSettings, Store, open_store
from .common import read_password, warn

FromPasswordFileOpt = Annotated[str | None, typer.Option(
    "--from-password-file", help="Read the source store's password from this file.")]
FromPasswordCmdOpt = Annotated[str | None, typer.Option(
    "--from-password-command", help="Run this command to get the source store's password.")]


def peer_password(file: str | None, command: str | None, fallback_file: str | None,
                  fallback_command: str | None, env: str = "CASBACKUP_FROM_PASSWORD",
                  label: str = "source store") -> Callable[[], str]:
    def get() -> str:
        if file or command:
            return read_password(file, command)
        if (pw := read_password_env_or_file(env)) is not None:
            return pw
        return read_password(fallback_file, fallback_command, prompt=f"Password for {label}")
    return get


def open_peer(url: str, password: Callable[[], str], label: str,
              cache: CacheSettings | None = None) -> Store:
    try:
        return open_store(url, password, lambda msg: warn(f"{label}: {msg}"), cache)
    except WrongPassword as e:
        raise WrongPassword(f"{label} {url}: {e}") from None
