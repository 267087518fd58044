"""The Typer application: registers one command per module and maps errors to exit codes.

Every ``cli/cmd_*.py`` module defines ``register(app)``; they are discovered by name, so a
new command is a new module and nothing else changes.

Invariant: ``main`` is the only place that turns exceptions into output: a ``CasError``
prints ``casbackup: <message>`` (one line) and exits with its ``exit_code``; anything else
is a bug and prints a traceback only with ``--debug`` (``CASBACKUP_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import typer

from ..errors import CasError
from .runtime import tune_malloc

app = typer.Typer(
    name="casbackup", no_args_is_help=True, add_completion=False,
    help="Content-addressed, deduplicating backups to local disk, S3 and SFTP.",
    pretty_exceptions_enable=False,
)

for _m in sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])):
    if _m.startswith("cmd_"):
        importlib.import_module(f"{__package__}.{_m}").register(app)


def main(argv: list[str] | None = None) -> None:
    tune_malloc()
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
