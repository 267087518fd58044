"""Options shared by the commands that select snapshots or files, parsed as restic does.

Every command that takes a snapshot (restore, ls, dump, diff, find, stats, sync, forget,
mount) takes ``--host``, ``--tag`` and ``--path`` as ``HostFilterOpt``, ``TagFilterOpt``
and ``PathFilterOpt`` and turns them into one ``SnapshotFilter`` with
``snapshot_filter``; ``ops.snapsel`` applies it to ``latest``, id prefixes and listings
alike (a filter that leaves nothing is exit 4).

Invariants: ``--tag`` values split on commas (``--tag a,b``: two tags on backup, "both"
as a filter); ``--time`` is local wall-clock time unless it names an offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ..errors import UsageError
from ..ops.snapsel import SnapshotFilter

HostFilterOpt = Annotated[list[str] | None, typer.Option(
    "--host", metavar="HOST", help="Only snapshots of this host; repeat: any of them.")]
TagFilterOpt = Annotated[list[str] | None, typer.Option(
    "--tag", metavar="TAG[,TAG…]",
    help="Only snapshots carrying all these tags; repeat for either group.")]
PathFilterOpt = Annotated[list[str] | None, typer.Option(
    "--path", metavar="PATH",
    help="Only snapshots of this (absolute) source path; repeat: all of them.")]


def snapshot_filter(host: list[str] | None, tag: list[str] | None,
                    path: list[str] | None) -> SnapshotFilter:
    """The selection ``--host``/``--tag``/``--path`` make (``snapsel.SnapshotFilter``)."""
    return SnapshotFilter.of(host, tag, path)


def parse_time(text: str, option: str = "--time") -> float:
    """``"2026-01-02 03:04:05"`` (also ``…T…``, minutes or a date alone, an offset) as
    seconds since the epoch."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} '{text}': expected a time like '2026-01-02 03:04:05'"
                         ) from None
    return t.timestamp()
