"""The Typer application: registers one command per module and maps errors to exit codes.

Every ``cli/cmd_*.py`` module defines ``register(app)``; they are discovered by name, so a
new command is a new module and nothing else changes.

Invariant: ``main`` is the only place that turns exceptions into output: a ``CasError``
prints ``casbackup: <message>`` (one line, stderr) and exits with its ``exit_code``; with
``--json`` the same message and code also go to stdout as one ``exit_error`` line
(docs/json.md), whatever the error (usage, interrupt, bug); SIGINT and
SIGTERM (``signals``) print ``casbackup: interrupted: <what is left undone>`` and exit 130
or 143, never 0; anything else is a bug and prints a traceback only with ``--debug``
(``CASBACKUP_DEBUG=1``).
"""

from __future__ import annotations

import copy
import importlib
import os
import pkgutil
import signal
import sys
from typing import Annotated, Any

import typer

from .. import __version__
from ..errors import CasError, Interrupted, Locked, Terminated
from . import output, signals
from .clitree import fill_metavars
from .cmd_generate import COMPLETE_VAR
from .escape import escape_diagnostic, shown
from .runtime import tune_process

app = typer.Typer(
    name="casbackup", no_args_is_help=True, add_completion=False,
    help="Content-addressed, deduplicating backups to local disk, S3 and SFTP.",
    pretty_exceptions_enable=False,
)

def _version(value: bool) -> None:
    if value:
        typer.echo(f"casbackup {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version,
        help="Print the version and exit (with --json: {\"version\": …}).")] = False,
) -> None:
    """Content-addressed, deduplicating backups to local disk, S3 and SFTP."""
    # a callback keeps typer in group mode even when only one command is registered


# commands whose module is not cmd_<command>.py
_ALIASES = {"list": "cmd_snapshots", "ls": "cmd_snapshots", "prune": "cmd_gc",
            "check": "cmd_verify"}
# commands that are another command under a second name (restic's words)
_SAME_AS = {"check": "verify"}
_registered: set[str] = set()


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
                  if m.name.startswith("cmd_"))


def register(modules: list[str]) -> None:
    for m in modules:
        if m not in _registered:
            _registered.add(m)
            importlib.import_module(f"{__package__}.{m}").register(app)


# the options every store command takes (cli/common.py), as restic's global flags
_GLOBAL_FLAGS = {"--json", "--no-cache", "--no-lock", "--quiet", "-q", "--verbose", "-v"}
_GLOBAL_VALUED = {"--store", "-s", "--repo", "-r", "--password-file", "--password-command",
                  "--cache-dir"}


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the store options given before the command word moved after it
    (before a ``--``): restic's ``restic -r REPO --json snapshots`` is
    ``casbackup snapshots -r REPO --json``. Anything else before the word (``--version``,
    an unknown option) leaves ``args`` as they are, for the root command to answer."""
    lead: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):
        a = args[i]
        if a in _GLOBAL_FLAGS or ("=" in a and a.split("=", 1)[0] in _GLOBAL_VALUED):
            lead.append(a)
            i += 1
        elif a in _GLOBAL_VALUED and i + 1 < len(args):
            lead += args[i:i + 2]
            i += 2
        else:
            return args
    if not lead or i == len(args):
        return args
    rest = args[i:]
    end = rest.index("--") if "--" in rest else len(rest)
    return rest[:end] + lead + rest[end:]


def command_word(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


def register_for(args: list[str]) -> None:
    """Import only the module of the command being run (each pulls in its ops: ~40 ms
    of startup saved on every command), and none for root options alone (``--version``);
    no arguments, ``--help``, completion and unknown words get them all."""
    word = command_word(args)
    module = _ALIASES.get(word or "", f"cmd_{word}")
    modules = _command_modules()
    if COMPLETE_VAR in os.environ or not args or "--help" in args[:1]:
        register(modules)
    elif word is None:
        pass  # e.g. --version: answered by the root callback; needs no command module
    else:
        register([module] if module in modules else modules)


def build_command(all_commands: bool = False) -> Any:
    """The click command tree of the registered commands (all of them if asked), with
    the aliases of ``_SAME_AS`` and a metavar on every option (``clitree``)."""
    if all_commands:
        register(_command_modules())
    group = typer.main.get_group(app)
    for alias, target in _SAME_AS.items():
        cmd = group.commands.get(target)
        if cmd is not None and alias not in group.commands:
            twin = copy.copy(cmd)
            twin.name = alias
            twin.help = f"Alias of `{target}`: {cmd.help or ''}".strip()
            twin.short_help = f"Alias of `{target}`."
            group.add_command(twin, alias)
    return fill_metavars(group)


def _interrupted(word: str | None) -> Interrupted:
    what = signals.undone() or f"{word or 'the command'} did not finish"
    if signals.received() == signal.SIGTERM:
        return Terminated(f"terminated: {what}")
    return Interrupted(f"interrupted: {what}")


def _has_option(word: str | None, option: str) -> bool:
    cmd = typer.main.get_group(app).commands.get(word or "")
    return cmd is not None and any(option in p.opts for p in cmd.params)


def _explain(e: CasError, word: str | None) -> str:
    msg = str(e)
    if isinstance(e, Locked) and _has_option(word, "--retry-lock"):
        msg += "; --retry-lock DURATION waits for it"
    return msg


def main(argv: list[str] | None = None) -> None:
    tune_process()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("CASBACKUP_DEBUG") == "1"
    if "--debug" in args:
        args.remove("--debug")
        debug = True
    args = hoist_global_options(args)
    word = command_word(args)
    output.JSON = "--json" in args[: args.index("--") if "--" in args else len(args)]
    if "--version" in args and set(args) <= {"--version", "--json"} and output.JSON:
        output.emit("version", {"version": __version__})
        return
    register_for(args)
    if word not in (None, "daemon"):  # the daemon logs its own events (one JSON a line)
        from ..store import on_retry
        from .progress import retry_line

        on_retry(retry_line)
    if COMPLETE_VAR in os.environ:
        from typer._completion_classes import completion_init

        completion_init()
    # from here on an interrupt is ours to report; until here (the command's imports,
    # nothing opened yet) it is entry.py's, or the caller's
    signals.install()
    try:
        try:
            rv = build_command().main(args, standalone_mode=False, complete_var=COMPLETE_VAR)
        except KeyboardInterrupt:  # typer turns it into a returned 130; this is the rest
            rv = 130
        if rv == 130 or signals.received() is not None:
            raise _interrupted(word)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except CasError as e:
        if debug:
            raise
        _fail(e.exit_code, _explain(e, word))
    except typer.Abort:
        _fail(130, "aborted")
    except typer.Exit as e:
        if e.exit_code and output.JSON:
            output.exit_error(e.exit_code, f"{word or 'casbackup'} exited {e.exit_code}")
        sys.exit(e.exit_code)
    except Exception as e:  # usage errors of typer's (vendored) click, and bugs
        show = getattr(e, "show", None)
        if callable(show) and isinstance(getattr(e, "exit_code", None), int):
            show()  # "Usage: … Error: No such option: --x" (click's own format)
            if output.JSON:
                fmt = getattr(e, "format_message", None)
                output.exit_error(2, f"usage: {fmt() if callable(fmt) else e}")
            sys.exit(2)
        if debug:
            raise
        if isinstance(e, OSError):
            _fail(1, os_error_line(e))
        # one line, as for every error; the traceback is for the bug report
        _fail(1, f"internal error ({type(e).__name__}: {e}); please report it with the "
                 "output of --debug")


def os_error_line(e: OSError) -> str:
    """An ``OSError``'s one line: its reason, then the path it names when it names one (a
    write into a nameless temporary file names none: no dangling ``: ``)."""
    reason = e.strerror or str(e)
    return f"{reason}: {e.filename}" if e.filename else reason


def _fail(code: int, message: str) -> None:
    """The one way a command ends in error: a line on stderr (and ``exit_error`` on stdout
    with ``--json``), then exit ``code``."""
    # escaped line by line: the one multi-line error (``config check``'s list of
    # problems, one a line) keeps its lines; no line carries a control character
    typer.echo("casbackup: " + "\n".join(map(escape_diagnostic, message.split("\n"))), err=True)
    if output.JSON:
        output.exit_error(code, shown(message))
    sys.exit(code)
