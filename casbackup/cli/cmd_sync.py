"""``casbackup sync SRC DST``: copy snapshots between paired stores; ``--watch`` keeps going.

Output: one line per copied snapshot and a summary (``--json``: a ``copied`` JSON line per
snapshot, then a ``summary`` line). Exit 0 when everything selected is in DST.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..model.snapshot import Snapshot
from ..ops.sync import Copied, Selection, SyncObserver, sync
from ..ops.sync_watch import sync_watch
from .common import (
    CacheDirOpt,
    JsonOpt,
    NoCacheOpt,
    PasswordCmdOpt,
    PasswordFileOpt,
    cache_settings,
    echo,
    emit_json,
    human_bytes,
    read_password,
)
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .peer import FromPasswordCmdOpt, FromPasswordFileOpt, open_peer, peer_password
from .progress import CliObserver
from .signals import graceful_stop, on_interrupt


class SyncCliObserver(CliObserver, SyncObserver):
    def __init__(self, json_lines: bool, to: str) -> None:
        super().__init__(json_lines=json_lines)
        self.to = to

    def copied(self, copied: Copied, snapshot: Snapshot) -> None:
        if self.json:
            emit_json({"type": "copied", "to": self.to, "source_id": copied.src_id,
                       "id": copied.dst_id, "time": snapshot.datetime.isoformat(),
                       "paths": snapshot.paths, "blobs": copied.blobs, "trees": copied.trees,
                       "bytes": copied.bytes, "bytes_stored": copied.stored})
        else:
            echo(f"copied snapshot {copied.src_id[:8]} -> {copied.dst_id[:8]} "
                 f"({', '.join(snapshot.paths)}): {copied.blobs} blobs, "
                 f"{human_bytes(copied.bytes)} ({human_bytes(copied.stored)} stored)")


def sync_cmd(
    src: Annotated[str, typer.Argument(help="Source store URL.")],
    dst: Annotated[str, typer.Argument(help="Destination store URL (made with init --from SRC).")],
    snapshots: Annotated[list[str] | None, typer.Argument(
        help="Snapshot ids (prefixes) or 'latest'; default every snapshot.")] = None,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", help="Only snapshots with this tag (repeatable: all of them).")] = None,
    host: Annotated[list[str] | None, typer.Option(
        "--host", help="Only snapshots of this host (repeatable: any of them).")] = None,
    path: Annotated[list[str] | None, typer.Option(
        "--path", help="Only snapshots of this source path (repeatable: all of them).")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Keep DST current until SIGINT/SIGTERM.")] = False,
    interval: Annotated[float, typer.Option(
        "--interval", help="--watch: seconds between checks of a non-local SRC.")] = 10.0,
    password_file: PasswordFileOpt = None,
    password_command: PasswordCmdOpt = None,
    from_password_file: FromPasswordFileOpt = None,
    from_password_command: FromPasswordCmdOpt = None,
    json_out: JsonOpt = False,
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Copy snapshots that DST lacks from SRC, moving only the blobs DST lacks."""
    on_interrupt(f"sync to {dst} did not finish: snapshots not reported as copied are not there")
    sel = Selection(ids=snapshots or [], tags=tag or [], hosts=host or [], paths=path or [])
    src_pw = peer_password(from_password_file, from_password_command, password_file,
                           password_command, label=f"source store {src}")
    obs = SyncCliObserver(json_out, dst)
    cache = cache_settings(cache_dir, no_cache)
    with open_peer(src, src_pw, "source store", cache) as s, open_peer(
            dst, lambda: read_password(password_file, password_command), "destination store",
            cache) as d:
        if watch:
            if not json_out:
                echo(f"watching {src} -> {dst} (Ctrl-C to stop)")
            with graceful_stop() as stop:
                sync_watch(s, d, sel, obs, stop, interval)
            return
        with job_metrics(metrics_file, d, metrics_job or "sync") as record:
            res = sync(s, d, sel, obs)
            record(res)
    if json_out:
        emit_json({"type": "summary", "to": dst, "selected": res.selected,
                   "already_present": res.present, "copied": len(res.copied),
                   "blobs": res.blobs, "bytes": res.bytes, "bytes_stored": res.stored})
    else:
        echo(f"{len(res.copied)} snapshot(s) copied, {res.present} already present; "
             f"{res.blobs} blobs, {human_bytes(res.bytes)} ({human_bytes(res.stored)} stored)")


def register(app: typer.Typer) -> None:
    app.command("sync")(sync_cmd)
