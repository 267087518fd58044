"""``casbackup sync SRC DST``: copy snapshots between paired stores; ``--watch`` keeps going.

Output: one line per copied snapshot (above the progress bar) and a summary (``--json``:
``status`` lines, a ``copied`` line per snapshot, then a ``summary`` line; -q: only
warnings and errors). Exit 0 when everything selected is in DST.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import NothingMatched
from ..model.snapshot import Snapshot
from ..ops.snapsel import SnapshotFilter
from ..ops.sync import Copied, Selection, SyncObserver, sync
from . import output
from .common import JsonOpt, QuietOpt, StoreArgs, echo, human_bytes, store_options
from .escape import escape
from .filteropts import snapshot_filter_options
from .metricsfile import MetricsFileOpt, MetricsJobOpt, job_metrics
from .output import emit, rfc3339
from .peer import FromPasswordCmdOpt, FromPasswordFileOpt, open_peer, peer_password
from .progress import CliObserver
from .signals import graceful_stop, on_interrupt


class SyncCliObserver(CliObserver, SyncObserver):
    def __init__(self, json_lines: bool, to: str, quiet: bool = False) -> None:
        super().__init__(json_lines=json_lines, quiet=quiet)
        self.to = to

    def copied(self, copied: Copied, snapshot: Snapshot) -> None:
        if self.json:
            emit("copied", {"to": self.to, "source_id": copied.src_id,
                            "id": copied.dst_id, "time": rfc3339(snapshot.datetime),
                            "paths": snapshot.paths, "blobs": copied.blobs,
                            "trees": copied.trees, "copied_bytes": copied.bytes,
                            "stored_bytes": copied.stored})
        elif not self.quiet:  # on stdout, above the bar (which is on stderr)
            line = (f"copied snapshot {copied.src_id[:8]} -> {copied.dst_id[:8]} "
                    f"({', '.join(snapshot.paths)}): {copied.blobs} blobs, "
                    f"{human_bytes(copied.bytes)} ({human_bytes(copied.stored)} stored)")
            bar = self._progress
            if bar is not None:
                bar.console.print(escape(line), markup=False, highlight=False, soft_wrap=True)
            else:
                echo(line)


@store_options(store=False)
@snapshot_filter_options
def sync_cmd(
    src: Annotated[str, typer.Argument(help="Source store URL.")],
    dst: Annotated[str, typer.Argument(help="Destination store URL (made with init --from SRC).")],
    snapshots: Annotated[list[str] | None, typer.Argument(
        help="Snapshot ids (prefixes) or 'latest'; default every snapshot.")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Keep DST current until SIGINT/SIGTERM.")] = False,
    interval: Annotated[float, typer.Option(
        "--interval", help="--watch: seconds between checks of a non-local SRC.")] = 10.0,
    from_password_file: FromPasswordFileOpt = None,
    from_password_command: FromPasswordCmdOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    metrics_file: MetricsFileOpt = None,
    metrics_job: MetricsJobOpt = None,
    *,
    filt: SnapshotFilter,
    so: StoreArgs,
) -> None:
    """Copy snapshots that DST lacks from SRC, moving only the blobs DST lacks."""
    on_interrupt(f"sync to {dst} did not finish: snapshots not reported as copied are not there")
    sel = Selection(ids=snapshots or [], filt=filt)
    src_pw = peer_password(from_password_file, from_password_command, so.password_file,
                           so.password_command, label=f"source store {src}")
    output.JSON = json_out
    obs = SyncCliObserver(json_out, dst, quiet)
    cache = so.cache()
    with open_peer(src, src_pw, "source store", cache) as s, open_peer(
            dst, so.password, "destination store", cache) as d:
        if watch:
            from ..ops.sync_watch import sync_watch  # watchdog: only for --watch

            if not json_out and not quiet:
                echo(f"watching {src} -> {dst} (Ctrl-C to stop)")
            with graceful_stop() as stop:
                sync_watch(s, d, sel, obs, stop, interval)
            return
        with job_metrics(metrics_file, d, metrics_job or "sync") as record:
            res = sync(s, d, sel, obs)
            record(res)
    if filt and res.listed and not res.selected:  # a typo must not pass as 0
        raise NothingMatched(f"no snapshot matches {filt.describe()}; nothing was copied")
    if json_out:
        emit("summary", {"to": dst, "selected": res.selected,
                         "already_present": res.present, "copied": len(res.copied),
                         "blobs": res.blobs, "copied_bytes": res.bytes,
                         "stored_bytes": res.stored})
    elif not quiet:
        echo(f"{len(res.copied)} snapshot(s) copied, {res.present} already present; "
             f"{res.blobs} blobs, {human_bytes(res.bytes)} ({human_bytes(res.stored)} stored)")


def register(app: typer.Typer) -> None:
    app.command("sync")(sync_cmd)
