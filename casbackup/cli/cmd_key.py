"""``casbackup key add|list|remove|passwd``: manage the passphrases of a store."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer

from ..errors import UsageError
from ..store import keyring
from .common import (
    Ctx,
    echo,
    read_password,
    store_command,
)
from .output import emit, rfc3339

key_app = typer.Typer(help="Manage the passphrases (key objects) of a store.", no_args_is_help=True)

NewPwFile = Annotated[
    str | None, typer.Option("--new-password-file", help="Read the new password from this file.")
]


def _new_password(new_password_file: str | None) -> Callable[[], str]:
    """Where the new passphrase comes from: ``--new-password-file``, then
    ``$CASBACKUP_NEW_PASSWORD``, then a prompt (twice) on a terminal -- never the sources
    of the current password. Resolved before the store is opened, so a missing source
    is a usage error with nothing changed."""
    pw: str | None = None
    if new_password_file is not None:
        if not new_password_file:
            raise UsageError("--new-password-file needs a file name")
        pw = read_password(new_password_file, None)
    elif "CASBACKUP_NEW_PASSWORD" in os.environ:
        pw = os.environ["CASBACKUP_NEW_PASSWORD"]
    elif not sys.stdin.isatty():
        raise UsageError("no new password: use --new-password-file, set "
                         "CASBACKUP_NEW_PASSWORD, or run on a terminal to be asked")
    if pw is None:
        return lambda: str(typer.prompt("New password", hide_input=True,
                                        confirmation_prompt=True))
    if not pw:
        raise UsageError("the new password is empty")
    return lambda: pw


@key_app.command("list")
@store_command
def key_list(
    ctx: Ctx,
) -> None:
    """List key objects; the one opened with the given password is marked."""
    with ctx.open() as st:
        rows = [
            {"id": k, "current": k == st.key_name, **keyring.describe_key(st, k)}
            for k in keyring.key_names(st)
        ]
    if ctx.json:  # one ``key`` line each; ``created`` as RFC 3339
        for r in rows:
            c = r.get("created")
            emit("key", {**r, "created": rfc3339(float(c)) if isinstance(c, int | float)
                         else None})
        return
    for r in rows:
        created = datetime.fromtimestamp(float(r.get("created", 0))).strftime("%Y-%m-%d %H:%M")  # type: ignore[arg-type]
        echo(
            f"{'*' if r['current'] else ' '} {str(r['id'])[:8]}  {r.get('username')}@"
            f"{r.get('hostname')}  {created}{_note(r)}"
        )


def _note(row: dict[str, object]) -> str:
    if "damaged" in row:
        return f"  DAMAGED: {row['damaged']}"
    if row.get("version") == 1:
        return "  (format 1, not bound to the config: `key passwd` rewrites it)"
    return ""


@key_app.command("add")
@store_command
def key_add(
    ctx: Ctx,
    new_password_file: NewPwFile = None,
) -> None:
    """Add a passphrase that opens the same master key."""
    new = _new_password(new_password_file)
    with ctx.open() as st:
        name = keyring.add_key(st, new())
    emit("summary", {"added": name, "removed": None}) if ctx.json else echo(f"added key {name[:8]}")


@key_app.command("remove")
@store_command
def key_remove(
    ctx: Ctx,
    key_id: Annotated[str, typer.Argument()],
) -> None:
    """Remove a key object (never the last one)."""
    with ctx.open() as st:
        matches = [k for k in keyring.key_names(st) if k.startswith(key_id)]
        if len(matches) != 1:
            raise UsageError(f"key id {key_id} matches {len(matches)} keys")
        keyring.remove_key(st, matches[0])
    if ctx.json:
        emit("summary", {"added": None, "removed": matches[0]})
    else:
        echo(f"removed key {matches[0][:8]}")


@key_app.command("passwd")
@store_command
def key_passwd(
    ctx: Ctx,
    new_password_file: NewPwFile = None,
) -> None:
    """Change the passphrase: add a key for the new one, then remove the old key."""
    new = _new_password(new_password_file)
    with ctx.open() as st:
        old = st.key_name
        name = keyring.add_key(st, new())  # the new key first ...
        if old:
            keyring.remove_key(st, old)  # ... then the old one: never a moment without a key
    emit("summary", {"added": name, "removed": old}) if ctx.json else echo(
        f"password changed (key {name[:8]})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(key_app, name="key")
