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
from .runtime import tune_process

app = typer.Typer(
    name="casbackup", no_args_is_help=True, add_completion=False,
    help="Content-addressed, deduplicating backups to local disk, S3 and SFTP.",
    pretty_exceptions_enable=False,
)

@app.callback()
def _root() -> None:
    """Content-addressed, deduplicating backups to local disk, S3 and SFTP."""
    # a callback keeps typer in group mode even when only one command is registered


# commands whose module is not cmd_<command>.py
_ALIASES = {"list": "cmd_snapshots", "ls": "cmd_snapshots", "prune": "cmd_gc"}
_registered: set[str] = set()


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
                  if m.name.startswith("cmd_"))


def register(modules: list[str]) -> None:
    for m in modules:
        if m not in _registered:
            _registered.add(m)
            importlib.import_module(f"{__package__}.{m}").register(app)


def register_for(args: list[str]) -> None:
    """Import only the module of the command being run (each pulls in its ops: ~40 ms
    of startup saved on every command); ``--help`` and unknown words get them all."""
    word = next((a for a in args if not a.startswith("-")), None)
    module = _ALIASES.get(word or "", f"cmd_{word}")
    modules = _command_modules()
    register([module] if module in modules and "--help" not in args[:1] else modules)


def main(argv: list[str] | None = None) -> None:
    tune_process()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("CASBACKUP_DEBUG") == "1"
    if "--debug" in args:
        args.remove("--debug")
        debug = True
    register_for(args)
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
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # usage errors of typer's (vendored) click, and bugs
        show = getattr(e, "show", None)
        if callable(show) and isinstance(getattr(e, "exit_code", None), int):
            show()  # "Usage: … Error: No such option: --x" (click's own format)
            sys.exit(2)
        if isinstance(e, OSError) and not debug:
            typer.echo(f"casbackup: {e.strerror or e}: {e.filename or ''}", err=True)
            sys.exit(1)
        raise
