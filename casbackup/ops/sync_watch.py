"""sync --watch: keep a destination store current with a source store until stopped.

Invariants:
- Each round is an ordinary ``Syncer.run`` (shared locks on both stores, snapshot written
  last), so stopping or killing the process between or during rounds leaves both stores
  sound; a stop request during a round abandons it before its snapshot (``Cancelled``).
- A round runs when the source's snapshot list changed since the last successful round,
  and at least every ``interval`` seconds the list is checked (one listing, no locks, so
  an idle watcher writes nothing). On a local source a watchdog observer on the store's
  ``snapshots/`` directory wakes the loop at once, so new snapshots reach the destination
  within about a second; other backends are polled every ``interval`` seconds.
- A failed round (locked by gc, a transient backend error, …) is reported as a warning
  and retried at the next check; it never ends the watch.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from ..errors import CasError, UsageError
from ..store import Store
from .sync import Cancelled, Selection, Syncer, SyncObserver

_TICK = 0.5  # the longest a stop request waits to be noticed


class _Wake(FileSystemEventHandler):  # type: ignore[misc]
    """A watchdog handler that sets an event on any change in the watched directory."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def dispatch(self, event: FileSystemEvent) -> None:
        self.wake.set()


def _observe(root: str, wake: threading.Event) -> Any:
    """Start a watchdog observer on ``root`` (and ``root/snapshots`` once it exists)."""
    from watchdog.observers import Observer as FsObserver

    obs = FsObserver()
    obs.schedule(_Wake(wake), root, recursive=False)  # notices snapshots/ being created
    obs.start()
    return obs


def sync_watch(src: Store, dst: Store, selection: Selection, observer: SyncObserver,
               stop: threading.Event, interval: float = 10.0) -> None:
    """Sync now, then whenever the source gains snapshots, until ``stop`` is set."""
    if selection.ids:
        raise UsageError("--watch copies every matching snapshot: give filters, not ids")
    syncer = Syncer(src, dst, observer, stop)
    wake = threading.Event()
    root = src.local_path()
    fs = _observe(root, wake) if root is not None and os.path.isdir(root) else None
    snapdir_watched = False
    last: frozenset[str] | None = None
    next_check = 0.0
    try:
        while not stop.is_set():
            if fs is not None and not snapdir_watched and root is not None:
                sd = src.local_snapshots_dir()
                if sd is not None and os.path.isdir(sd):
                    fs.schedule(_Wake(wake), sd, recursive=False)
                    snapdir_watched = True
            now = time.monotonic()
            if wake.is_set() or now >= next_check:
                wake.clear()
                next_check = now + interval
                try:
                    ids = frozenset(src.snapshot_ids())
                    if ids != last:
                        syncer.run(selection)
                        last = ids
                except Cancelled:
                    break
                except CasError as e:
                    observer.warn(dst.url or "destination", f"sync round failed: {e}")
            wake.wait(min(_TICK, max(0.0, next_check - time.monotonic())))
    finally:
        if fs is not None:
            fs.stop()
            fs.join()
