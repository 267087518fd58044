"""Options and rendering shared by the maintenance commands (gc/prune, forget --prune).

Not a command module (no ``cmd_`` prefix): ``app.py`` does not register it.
Invariant: parsing errors are ``UsageError`` (exit 2) with one line naming the option.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from ..errors import UsageError
from ..ops.gc import DEFAULT_KEEP_UNINDEXED, GcOptions, GcReport
from .common import echo, human_bytes
from .escape import escape_diagnostic

_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

RetryLockOpt = Annotated[str, typer.Option(
    "--retry-lock", help="Retry a locked store for this long (e.g. 30s, 5m, 1h).")]
MaxUnusedOpt = Annotated[str, typer.Option(
    "--max-unused", help="Repack a pack when more than this share of it is unused "
                         "(e.g. 5%, 0.05, 0 = repack any garbage).")]
KeepUnindexedOpt = Annotated[str, typer.Option(
    "--keep-unindexed-for",
    help="Ignored, kept for old scripts: gc's two-phase deletion protects the packs of "
         "running backups (docs/design.md §8).")]


def parse_span(text: str, option: str) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h``, ``2d`` or ``1h30m``."""
    s = text.strip().lower()
    total, pos = 0.0, 0
    while pos < len(s):
        m = _SPAN.match(s, pos)
        if m is None or m.end() == pos:
            raise UsageError(f"{option} {text!r}: expected a duration such as 30s, 5m or 1h")
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not s:
        raise UsageError(f"{option}: empty duration")
    return total


def parse_share(text: str, option: str = "--max-unused") -> float:
    s = text.strip()
    try:
        v = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected a share such as 5% or 0.05") from None
    if not 0 <= v <= 1:
        raise UsageError(f"{option} {text!r}: must be between 0% and 100%")
    return v


def gc_options(max_unused: str, keep_unindexed_for: str, retry_lock: str,
               dry_run: bool) -> GcOptions:
    return GcOptions(max_unused=parse_share(max_unused),
                     keep_unindexed_for=parse_span(keep_unindexed_for, "--keep-unindexed-for"),
                     retry_lock=parse_span(retry_lock, "--retry-lock"), dry_run=dry_run)


def default_keep_unindexed() -> str:
    return f"{DEFAULT_KEEP_UNINDEXED / 3600:g}h"


_GC_RENAMED = {"bytes_before": "before_bytes", "bytes_after": "after_bytes",
               "bytes_freed": "freed_bytes", "bytes_written": "written_bytes"}


def gc_fields(rep: GcReport) -> dict[str, Any]:
    """A gc report for ``--json`` (docs/json.md: sizes end in ``_bytes``)."""
    return {_GC_RENAMED.get(k, k): v for k, v in rep.to_map().items()}


def render_gc(rep: GcReport) -> None:
    would = "would " if rep.dry_run else ""
    echo(f"marked {rep.live_blobs} live blobs in {rep.trees} trees of {rep.snapshots} "
         f"snapshot(s)")
    echo(f"packs: {rep.packs_before} before; {would}delete {rep.packs_deleted} unused, "
         f"{would}repack {rep.packs_repacked} into {rep.packs_written}"
         f"{' (estimate)' if rep.dry_run else ''}, {would}remove {rep.orphans_deleted} "
         f"unindexed; {rep.packs_after} after")
    if rep.packs_dropped:
        echo(f"index: {would}drop {rep.packs_dropped} missing pack(s) that held nothing in use")
    echo(f"index objects: {rep.index_before} -> {rep.index_after}")
    for line in rep.waiting:
        echo(line)
    echo(f"{'would free' if rep.dry_run else 'freed'} {human_bytes(rep.bytes_freed)}, "
         f"{'would keep' if rep.dry_run else 'kept'} {human_bytes(rep.bytes_after)}"
         f" (wrote {human_bytes(rep.bytes_written)} of repacked blobs)")
    for w in rep.warnings:
        typer.echo(f"casbackup: warning: {escape_diagnostic(w)}", err=True)
