"""The Typer application: registers one command per module and maps errors to exit codes.

Invariant: ``main`` is the only place that turns exceptions into output: a ``CasError``
prints ``casbackup: <message>`` (one line) and exits with its ``exit_code``; anything else
is a bug and prints a traceback only with ``--debug`` (``CASBACKUP_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import CasError
from . import cmd_backup, cmd_cat, cmd_init, cmd_key, cmd_restore, cmd_snapshots, cmd_unlock
from . import cmd_verify

app = typer.Typer(
    name="casbackup", no_args_is_help=True, add_completion=False,
    help="Content-addressed, deduplicating backups to local disk, S3 and SFTP.",
    pretty_exceptions_enable=False,
)

app.command("init")(cmd_init.init)
app.command("backup")(cmd_backup.backup_cmd)
app.command("restore")(cmd_restore.restore_cmd)
app.command("verify")(cmd_verify.verify_cmd)
app.command("test", help="Alias of `verify`.")(cmd_verify.verify_cmd)
app.command("snapshots")(cmd_snapshots.snapshots_cmd)
app.add_typer(cmd_snapshots.list_app, name="list")
app.command("ls")(cmd_snapshots.ls_cmd)
app.command("cat")(cmd_cat.cat_cmd)
app.add_typer(cmd_key.key_app, name="key")
app.command("unlock")(cmd_unlock.unlock_cmd)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("CASBACKUP_DEBUG") == "1"
    if "--debug" in args:
        args.remove("--debug")
        debug = True
    try:
        app(args, standalone_mode=False)
    except CasError as e:
        if debug:
            raise
        typer.echo(f"casbackup: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("casbackup: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("casbackup: interrupted", err=True)
        sys.exit(130)
    except (typer.BadParameter, typer.Exit) as e:
        if isinstance(e, typer.Exit):
            sys.exit(e.exit_code)
        raise
    except Exception as e:  # click usage errors and bugs
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(2)
        if isinstance(e, OSError) and not debug:
            typer.echo(f"casbackup: {e.strerror or e}: {e.filename or ''}", err=True)
            sys.exit(1)
        raise
