"""Options and helpers shared by the commands: store URL, password sources, output.

Invariants: a password is read from exactly one source, in this order: ``--password-file``,
``--password-command``, ``$CASBACKUP_PASSWORD``, ``$CASBACKUP_PASSWORD_FILE``, then an
interactive prompt (only on a TTY). Files, commands and the environment are read by
``casbackup.passwords``, the daemon's reader too (a file's trailing line ends go; an empty
password is an error). A password never reaches a log, an error or JSON.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, NamedTuple, get_type_hints

import typer

from ..errors import UsageError, WrongPassword
from ..passwords import (
    command_label,
    read_password_env_or_file,
    read_password_file,
    run_password_command,
)
from ..store import CacheSettings, Store, open_store
from .escape import escape, shown

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        "--repo",
        "-r",
        envvar="CASBACKUP_STORE",
        help="Store URL: a path (default local store), s3://bucket/prefix, "
        "sftp://user@host/path. Env: CASBACKUP_STORE.",
    ),
]
NoLockOpt = Annotated[bool, typer.Option(
    "--no-lock", help="Write no lock (reading commands only, e.g. on a read-only store); "
    "gc on other hosts then cannot see this command.")]
CacheDirOpt = Annotated[str | None, typer.Option(
    "--cache-dir", help="Keep the local cache of remote stores here (default: "
    "$CASBACKUP_CACHE_DIR, else $XDG_CACHE_HOME/casbackup, else ~/.cache/casbackup).")]
NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Use no local cache: read every index, snapshot and tree object "
    "from the store.")]
PasswordFileOpt = Annotated[
    str | None, typer.Option("--password-file", help="Read the password from this file.")
]
PasswordCmdOpt = Annotated[
    str | None, typer.Option("--password-command", help="Run this command to get the password.")
]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Machine-readable output: JSON lines on stdout (docs/json.md).")]
VerboseOpt = Annotated[int, typer.Option(
    "--verbose", "-v", count=True, help="List files as they are processed (-vv: every file).")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress output: only warnings and errors.")]


class Ctx:
    """What every command needs: where the store is and how to get its password."""

    def __init__(
        self,
        store: str | None,
        password_file: str | None = None,
        password_command: str | None = None,
        json_out: bool = False,
        no_lock: bool = False,
        cache: CacheSettings | None = None,
    ) -> None:
        if not store:
            raise UsageError("no store given: use --store PATH or set CASBACKUP_STORE")
        self.url = store
        self.cache = cache or cache_settings(None, False)
        self.password_file = password_file
        self.password_command = password_command
        self.json = json_out
        self.no_lock = no_lock
        self.quiet = False  # -q: no progress, only warnings and errors

    def password_source(self, confirm: bool = False) -> Callable[[], str]:
        return lambda: read_password(self.password_file, self.password_command, confirm)

    def open(self) -> Store:
        st = open_store(self.url, self.password_source(), warn, self.cache)
        st.on_warning = warn  # e.g. a damaged snapshot object that listing skips
        st.no_lock = self.no_lock
        return st


def cache_settings(cache_dir: str | None, no_cache: bool) -> CacheSettings:
    """The cache of ``--cache-dir`` / ``--no-cache``; its tree-blob bound is
    ``$CASBACKUP_CACHE_LIMIT`` (a size such as 512M; default 1G)."""
    if no_cache and cache_dir:
        raise UsageError("--cache-dir and --no-cache exclude each other")
    if no_cache:
        return CacheSettings.disabled()
    if cache_dir is not None and not cache_dir.strip():
        raise UsageError("--cache-dir needs a directory")
    base = (CacheSettings(Path(cache_dir).expanduser().absolute()) if cache_dir
            else CacheSettings.default())
    limit = os.environ.get("CASBACKUP_CACHE_LIMIT", "").strip()
    if not limit:
        return base
    from ..source.exclude import parse_size  # only then: its pattern code costs ~5 ms

    return replace(base, tree_limit=parse_size(limit))


def read_password(
    password_file: str | None,
    password_command: str | None,
    confirm: bool = False,
    prompt: str = "Password",
) -> str:
    if password_file:
        return read_password_file(password_file, f"file {password_file}")
    if password_command:
        return run_password_command(password_command,
                                    f"command {command_label(password_command)}")
    env = read_password_env_or_file("CASBACKUP_PASSWORD")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise WrongPassword(
            "no password given: set CASBACKUP_PASSWORD, --password-file or --password-command"
        )
    pw: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return pw


def utf8_arg(value: str, option: str) -> str:
    """``value`` given for ``option``, refused (usage error) unless it is UTF-8 text: the
    command line arrives with ``surrogateescape``, and snapshot fields are text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{option} {value}: not valid UTF-8") from None
    return value


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def echo(msg: str = "") -> None:
    """One line of human output on stdout, escaped (``escape``: a name never reaches the
    terminal raw). A caller wanting a blank line calls ``echo()``."""
    typer.echo(escape(msg))


def warn(msg: str) -> None:
    """One warning line on stderr (above a live progress bar); with ``--json`` also a
    ``warning`` line on stdout."""
    from . import output, progress

    progress.notice(f"casbackup: warning: {msg}")  # escaped there
    if output.JSON:
        output.emit("warning", {"message": shown(msg)})


_STORE_PARAMS = [  # the options ``store_command`` gives every command that opens a store
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=opt)
    for name, default, opt in (
        ("store", None, StoreOpt), ("password_file", None, PasswordFileOpt),
        ("password_command", None, PasswordCmdOpt), ("json_out", False, JsonOpt),
        ("no_lock", False, NoLockOpt), ("quiet", False, QuietOpt),
        ("cache_dir", None, CacheDirOpt), ("no_cache", False, NoCacheOpt),
    )
]


def with_params(fn: Callable[..., None], extra: list[inspect.Parameter],
                call: Callable[[tuple[Any, ...], dict[str, Any]], None], *,
                drop: tuple[str, ...] = (), skip: int = 0) -> Callable[..., None]:
    """FN as a typer command whose parameters are FN's own (annotations resolved; the first
    SKIP and those named in DROP left out) followed by EXTRA; ``call(args, keywords)``
    receives what typer passes and calls FN (the one way this package rewrites a
    command's signature: ``store_command``, ``store_options``, the snapshot filters)."""
    hints = get_type_hints(fn, include_extras=True)
    own = [p.replace(annotation=hints[p.name])
           for p in list(inspect.signature(fn).parameters.values())[skip:] if p.name not in drop]
    params = own + extra

    @functools.wraps(fn)
    def command(*args: Any, **kw: Any) -> None:
        call(args, kw)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__  # typer must read the new signature, not fn's
    return command


def store_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command the options every store command has (``--store``,
    ``--password-file``, ``--password-command``, ``--json``, ``-q``, ``--cache-dir``,
    ``--no-cache``) and call it with the ``Ctx``
    they make as its first argument: ``def cmd(ctx: Ctx, …own options…)``."""
    def command(args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        cache = cache_settings(kw.pop("cache_dir", None), kw.pop("no_cache", False))
        ctx = Ctx(kw.pop("store"), kw.pop("password_file"), kw.pop("password_command"),
                  kw.pop("json_out"), kw.pop("no_lock", False), cache)
        ctx.quiet = kw.pop("quiet", False)  # cmd_test calls verify_cmd without it
        from . import output

        output.JSON = ctx.json  # errors and warnings of this command as JSON lines too
        if ctx.quiet:
            from . import progress

            progress.QUIET = True  # every CliObserver of this process: no progress output
        fn(ctx, *args, **kw)

    return with_params(fn, _STORE_PARAMS, command, skip=1)  # without ctx


class StoreArgs(NamedTuple):
    """``--store``, ``--password-file``, ``--password-command``, ``--cache-dir`` and
    ``--no-cache`` as one value, for the commands ``store_command`` does not fit: a store
    that may be absent (``status``, ``report``, ``test`` read a configuration instead) or
    given as arguments (``sync``), or a different ``--json`` (``cat``)."""

    store: str | None
    password_file: str | None
    password_command: str | None
    cache_dir: str | None
    no_cache: bool

    def cache(self) -> CacheSettings:
        return cache_settings(self.cache_dir, self.no_cache)

    def ctx(self, json_out: bool = False, default_store: str | None = None) -> Ctx:
        """The ``Ctx`` of ``--store`` (``default_store`` without one)."""
        return Ctx(self.store or default_store, self.password_file, self.password_command,
                   json_out, cache=self.cache())

    def password(self) -> str:
        return read_password(self.password_file, self.password_command)


def store_options(*, store: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the store options of ``StoreArgs`` (without ``--store`` when STORE
    is false), passed to it as one keyword ``so: StoreArgs``."""
    table = [p for p in _STORE_PARAMS
             if p.name in StoreArgs._fields and (store or p.name != "store")]

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        def command(args: tuple[Any, ...], kw: dict[str, Any]) -> None:
            kw["so"] = StoreArgs(kw.pop("store", None), kw.pop("password_file"),
                                 kw.pop("password_command"), kw.pop("cache_dir"),
                                 kw.pop("no_cache"))
            fn(*args, **kw)

        return with_params(fn, table, command, drop=("so",))

    return decorate
