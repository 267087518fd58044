"""Options shared by the commands that select snapshots or files, parsed as restic does.

Every command that takes a snapshot (restore, ls, dump, diff, find, stats, sync, mount)
is decorated with ``snapshot_filter_options``: it gains ``--host``, ``--tag`` and
``--path`` and receives them as one ``filt: SnapshotFilter`` keyword, which
``ops.snapsel`` applies to ``latest``, id prefixes and listings alike (a filter that
leaves nothing is exit 4). ``snapshots`` and ``forget`` declare the same options
themselves (``HostFilterOpt``, ``TagFilterOpt``, ``PathFilterOpt``; ``snapshots`` adds
``-H``).

Invariants: ``--tag`` values split on commas (``--tag a,b``: two tags on backup, "both"
as a filter); ``--time`` is local wall-clock time unless it names an offset.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer

from ..errors import UsageError
from ..ops.snapsel import SnapshotFilter
from .common import with_params

HostFilterOpt = Annotated[list[str] | None, typer.Option(
    "--host", metavar="HOST", help="Only snapshots of this host; repeat: any of them.")]
TagFilterOpt = Annotated[list[str] | None, typer.Option(
    "--tag", metavar="TAG[,TAG…]",
    help="Only snapshots carrying all these tags; repeat for either group.")]
PathFilterOpt = Annotated[list[str] | None, typer.Option(
    "--path", metavar="PATH",
    help="Only snapshots of this (absolute) source path; repeat: all of them.")]


_FILTER_PARAMS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
    for name, ann in (("filter_host", HostFilterOpt), ("filter_tag", TagFilterOpt),
                      ("filter_path", PathFilterOpt))]


def snapshot_filter_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Give command FN ``--host``, ``--tag`` and ``--path``, passed to it as one keyword
    ``filt: SnapshotFilter`` (apply it below ``store_command``)."""
    def command(args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        kw["filt"] = SnapshotFilter.of(kw.pop("filter_host", None), kw.pop("filter_tag", None),
                                       kw.pop("filter_path", None))
        fn(*args, **kw)

    return with_params(fn, _FILTER_PARAMS, command, drop=("filt",))


def parse_time(text: str, option: str = "--time") -> float:
    """``"2026-01-02 03:04:05"`` (also ``…T…``, minutes or a date alone, an offset) as
    seconds since the epoch."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} '{text}': expected a time like '2026-01-02 03:04:05'"
                         ) from None
    return t.timestamp()

