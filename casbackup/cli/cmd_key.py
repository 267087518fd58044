"""``casbackup key add|list|remove|passwd``: manage the passphrases of a store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ..store import keyring
from .common import (
    Ctx,
    echo,
    emit_json,
    read_password,
    store_command,
)

key_app = typer.Typer(help="Manage the passphrases (key objects) of a store.", no_args_is_help=True)

NewPwFile = Annotated[
    str | None, typer.Option("--new-password-file", help="Read the new password from this file.")
]


def _new_password(new_password_file: str | None) -> str:
    import os

    if new_password_file is None and "CASBACKUP_NEW_PASSWORD" in os.environ:
        return os.environ["CASBACKUP_NEW_PASSWORD"]
    return read_password(new_password_file, None, confirm=True, prompt="New password")


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
    if ctx.json:
        emit_json(rows)
        return
    for r in rows:
        created = datetime.fromtimestamp(float(r.get("created", 0))).strftime("%Y-%m-%d %H:%M")  # type: ignore[arg-type]
        echo(
            f"{'*' if r['current'] else ' '} {str(r['id'])[:8]}  {r.get('username')}@"
            f"{r.get('hostname')}  {created}"
        )


@key_app.command("add")
@store_command
def key_add(
    ctx: Ctx,
    new_password_file: NewPwFile = None,
) -> None:
    """Add a passphrase that opens the same master key."""
    with ctx.open() as st:
        name = keyring.add_key(st, _new_password(new_password_file))
    emit_json({"added": name}) if ctx.json else echo(f"added key {name[:8]}")


@key_app.command("remove")
@store_command
def key_remove(
    ctx: Ctx,
    key_id: Annotated[str, typer.Argument()],
) -> None:
    """Remove a key object (never the last one)."""
    with ctx.open() as st:
        matches = [k for k in keyring.key_names(st) if k.startswith(key_id)]
        from ..errors import UsageError

        if len(matches) != 1:
            raise UsageError(f"key id {key_id} matches {len(matches)} keys")
        keyring.remove_key(st, matches[0])
    emit_json({"removed": matches[0]}) if ctx.json else echo(f"removed key {matches[0][:8]}")


@key_app.command("passwd")
@store_command
def key_passwd(
    ctx: Ctx,
    new_password_file: NewPwFile = None,
) -> None:
    """Change the passphrase: add a key for the new one, then remove the old key."""
    with ctx.open() as st:
        old = st.key_name
        name = keyring.add_key(st, _new_password(new_password_file))  # the new key first ...
        if old:
            keyring.remove_key(st, old)  # ... then the old one: never a moment without a key
    emit_json({"added": name, "removed": old}) if ctx.json else echo(
        f"password changed (key {name[:8]})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(key_app, name="key")
