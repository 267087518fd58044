"""``casbackup watch PATH… --store URL``: snapshot changes as they happen.

Output: a line per snapshot (``--json``: JSON lines ``watching``, ``ready``, ``saved``
with ``id`` and ``latency_seconds``, ``unchanged``, ``synced``, ``error``; docs/json.md). SIGINT or
SIGTERM stops after the backup under way (a second one abandons it); SIGUSR1 asks for a
full rescan.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Annotated, Any

import typer

from ..ops.archiver import ArchiveOptions
from ..ops.sync import Copied
from ..ops.watch import Replica, Watcher, WatchObserver, WatchOptions, WatchSnapshot
from ..source.exclude import Excluder
from .common import (
    Ctx,
    echo,
    human_bytes,
    store_command,
)
from .output import backup_summary, emit
from .peer import open_peer, peer_password
from .progress import notice
from .signals import graceful_stop


class WatchCliObserver(WatchObserver):
    def __init__(self, json_lines: bool, store: str) -> None:
        self.json = json_lines
        self.store = store
        self._lock = threading.Lock()

    def _out(self, obj: dict[str, Any], text: str | None) -> None:
        with self._lock:
            if self.json:
                emit(obj.pop("type"), obj)
            elif text is not None:
                echo(text)

    def watching(self, paths: list[str]) -> None:
        self._out({"type": "watching", "paths": paths, "store": self.store},
                  f"watching {', '.join(paths)} -> {self.store} (Ctrl-C to stop)")

    def ready(self) -> None:
        self._out({"type": "ready"}, None)

    def snapshot(self, info: WatchSnapshot) -> None:
        s = info.snapshot
        m: dict[str, Any] = {
            "type": "saved" if s is not None else "unchanged",
            "id": s.id if s is not None else None,
            "latency_seconds": None if info.latency_s is None else round(info.latency_s, 4),
            "duration_seconds": round(info.duration_s, 4), "scan": info.scan,
            "reason": info.reason,
            "events": info.events, "dirs_scanned": info.dirs_scanned,
            "dirs_reused": info.dirs_reused,
        }
        if s is None:
            self._out(m, None)
            return
        m.update(backup_summary(s.summary))
        lat = "" if info.latency_s is None else f", {info.latency_s:.2f} s after the change"
        self._out(m, f"snapshot {s.id[:8]} saved ({info.scan} scan: {info.dirs_scanned} "
                     f"dirs read, {info.dirs_reused} kept; +{human_bytes(s.summary.bytes_added)}"
                     f"{lat})")

    def synced(self, replica: str, copied: Copied, latency_s: float | None) -> None:
        self._out({"type": "synced", "to": replica, "source_id": copied.src_id,
                   "id": copied.dst_id, "blobs": copied.blobs, "copied_bytes": copied.bytes,
                   "latency_seconds": None if latency_s is None else round(latency_s, 4)},
                  f"  -> {replica}: {copied.dst_id[:8]} ({copied.blobs} blobs)")

    def warn(self, path: str, message: str) -> None:
        with self._lock:
            if self.json:
                emit("error", {"error": {"message": message}, "during": "watch",
                               "item": path})
        notice(f"casbackup: warning: {path}: {message}")


@store_command
def watch_cmd(
    ctx: Ctx,
    paths: Annotated[list[str], typer.Argument(help="Files and directories to watch.")],
    debounce: Annotated[float, typer.Option(
        "--debounce", help="Seconds of quiet after a change before a snapshot.")] = 2.0,
    max_delay: Annotated[float, typer.Option(
        "--max-delay", help="Snapshot at most this many seconds after the first change, "
                            "even if changes continue.")] = 60.0,
    full_scan_every: Annotated[float, typer.Option(
        "--full-scan-every", help="Seconds between full rescans that catch what events "
                                  "cannot (0: never).")] = 3600.0,
    sync_to: Annotated[list[str] | None, typer.Option(
        "--sync-to", help="Replicate each snapshot to this paired store (repeatable).")] = None,
    sync_password_file: Annotated[str | None, typer.Option(
        "--sync-password-file", help="Replicas' password file (default: the store's).")] = None,
    sync_password_command: Annotated[str | None, typer.Option(
        "--sync-password-command", help="Command printing the replicas' password.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag the snapshots.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", "-e", help="gitignore-style pattern to leave out (repeatable).")] = None,
    exclude_file: Annotated[list[str] | None, typer.Option(
        "--exclude-file", help="File of gitignore-style patterns (repeatable).")] = None,
    exclude_caches: Annotated[bool, typer.Option(
        "--exclude-caches", help="Skip directories holding a CACHEDIR.TAG.")] = False,
    one_file_system: Annotated[bool, typer.Option(
        "--one-file-system", "-x", help="Do not cross filesystem boundaries.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="Record this hostname.")] = None,
) -> None:
    """Watch PATHS and snapshot every burst of changes into the store."""
    opts = WatchOptions(
        debounce=debounce, max_delay=max_delay, full_scan_every=full_scan_every,
        tags=tag or [], host=host,
        archive=ArchiveOptions(
            excluder=Excluder.from_options(exclude or [], exclude_file or [], exclude_caches),
            one_file_system=one_file_system))
    obs = WatchCliObserver(ctx.json, ctx.url)
    with contextlib.ExitStack() as stack:
        st = stack.enter_context(ctx.open())
        replicas = []
        for url in sync_to or []:
            pw = peer_password(sync_password_file, sync_password_command, ctx.password_file,
                               ctx.password_command, env="CASBACKUP_SYNC_PASSWORD",
                               label=f"replica {url}")
            replicas.append(Replica(stack.enter_context(open_peer(url, pw, "replica",
                                                                ctx.cache)), url))
        stop = stack.enter_context(graceful_stop())
        watcher = Watcher(st, paths, opts, obs, stop, replicas)
        old = signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(
            target=watcher.request_full_scan, args=("rescan request (SIGUSR1)",),
            daemon=True).start())
        stack.callback(signal.signal, signal.SIGUSR1, old)
        watcher.run()


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_cmd)
