"""``casbackup find PATTERN…``: which snapshots hold matching entries (restic's find).

Invariants: output groups the matches by snapshot, oldest snapshot first and entries in
tree order; no match at all is ``NothingMatched`` (exit 4); a tree that could not be read
is a warning naming it and, after the output, ``IntegrityError`` (exit 13).
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from typing import Annotated

import typer

from ..errors import IntegrityError, NothingMatched, UsageError
from ..ops.find import Match, SnapshotMatches, find
from ..ops.snapsel import SnapshotFilter, select, st_mode
from ..ops.strip import check_strip, strip_components
from .common import Ctx, echo, store_command, warn
from .filteropts import snapshot_filter_options
from .output import emit, node_fields, rfc3339
from .stripopt import StripOpt


def parse_time(value: str | None, option: str) -> int | None:
    """``2026-01-02``, ``2026-01-02 15:04`` or ``2026-01-02 15:04:05`` (local time, or
    with a UTC offset) as nanoseconds since the epoch."""
    if value is None:
        return None
    try:
        return int(datetime.fromisoformat(value.strip()).timestamp() * 10**9)
    except ValueError:
        raise UsageError(f"{option} {value}: not a time like 2026-01-02 or "
                         "'2026-01-02 15:04:05'") from None


def _stamp(ns: float) -> str:
    return datetime.fromtimestamp(ns).strftime("%Y-%m-%d %H:%M:%S")


def _long(m: Match) -> str:
    n = m.node
    target = f" -> {os.fsdecode(n.target)}" if n.target is not None else ""
    return (f"{stat.filemode(st_mode(n))} {n.user or n.uid:>8} {n.group or n.gid:>8} "
            f"{n.size:>12} {_stamp(n.mtime_ns / 1e9)} {os.fsdecode(m.path)}{target}")


def _stripped(groups: list[SnapshotMatches], n: int) -> list[SnapshotMatches]:
    """--strip-components: the matches' paths without N leading components; a match
    with nothing left is left out, and so is a snapshot with no match left."""
    out = []
    for g in groups:
        kept = [Match(p, m.node) for m in g.matches
                if (p := strip_components(m.path, n)) is not None]
        if kept:
            out.append(SnapshotMatches(g.snapshot, kept))
    return out


@store_command
@snapshot_filter_options
def find_cmd(
    ctx: Ctx,
    patterns: Annotated[list[str], typer.Argument(
        help="Glob patterns: without '/' they match names, with '/' whole paths.")],
    snapshot: Annotated[list[str] | None, typer.Option(
        "--snapshot", help="Search only this snapshot (id prefix, 'latest', or "
        "SNAP:PATH for a subtree; repeatable). Default: every snapshot.")] = None,
    newest: Annotated[str | None, typer.Option(
        "--newest", "-N", help="Only entries modified at or before this time.")] = None,
    oldest: Annotated[str | None, typer.Option(
        "--oldest", "-O", help="Only entries modified at or after this time.")] = None,
    ignore_case: Annotated[bool, typer.Option(
        "--ignore-case", "-i", help="Match patterns regardless of case.")] = False,
    long: Annotated[bool, typer.Option("--long", "-l", help="Show mode, size, mtime.")
                    ] = False,
    strip: StripOpt = 0,
    *,
    filt: SnapshotFilter,
) -> None:
    """Find entries matching PATTERN… in all (or the selected) snapshots."""
    filters = filt
    check_strip(strip)
    newest_ns, oldest_ns = parse_time(newest, "--newest"), parse_time(oldest, "--oldest")
    with ctx.open() as st:
        targets = select(st, snapshot or [], filters)
        res = find(st, patterns, targets, ignore_case=ignore_case, newest_ns=newest_ns,
                   oldest_ns=oldest_ns)
    if strip:
        res.groups = _stripped(res.groups, strip)
    for e in res.errors:
        warn(e)
    if ctx.json:
        for g in res.groups:  # one line per snapshot, as restic's find --json groups
            emit("matches", {"snapshot_id": g.snapshot.id, "time": rfc3339(g.snapshot.time),
                             "hostname": g.snapshot.hostname, "hits": len(g.matches),
                             "matches": [node_fields(m.node, m.path) for m in g.matches]})
    else:
        for i, g in enumerate(res.groups):
            s = g.snapshot
            if i:
                echo()
            echo(f"Found matching entries in snapshot {s.id[:8]} from "
                 f"{_stamp(s.time)} (host {s.hostname})")
            for m in g.matches:
                echo(_long(m) if long else os.fsdecode(m.path))  # escaped, as ls prints them
    if res.errors:
        raise IntegrityError(f"{len(res.errors)} tree(s) could not be read (first: "
                             f"{res.errors[0]}); entries below them were not searched")
    if not targets:
        raise NothingMatched(f"no snapshot matches {filters.describe()}" if filters else
                             "the store has no snapshots to search")
    if not res.groups:
        raise NothingMatched(f"no entry matches {' '.join(patterns)} in "
                             f"{res.searched} snapshot(s)")


def register(app: typer.Typer) -> None:
    app.command("find")(find_cmd)
