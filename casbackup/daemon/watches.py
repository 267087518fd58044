"""The daemon's watch entries: each runs ``ops.watch`` in its own thread until stopped.

Invariants:

* One thread per configured watch, keyed by ``source->store``; ``update(config)`` stops
  the watches that left (or changed in) the configuration and starts the new ones, so a
  reload never runs the same watch twice.
* A watch that ends with an error is reported (``watch-error``) and listed by ``dead()``
  for ``/healthz``; it is not restarted until the next reload.
* Snapshot latency (first change seen → snapshot saved) goes to the metrics.
* When ``ops.watch`` is not available the watches are reported (``watch-unavailable``)
  and listed as dead, never silently ignored.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from typing import Any

from ..errors import CasError
from .config import Config, WatchConfig
from .jobs import archive_options, open_configured
from .metrics import Metrics

STOP_WAIT = 30.0


def watch_name(w: WatchConfig) -> str:
    return f"{w.source}->{w.store}"


def _key(config: Config, w: WatchConfig) -> tuple[Any, ...]:
    """Everything a running watch depends on: a change restarts it."""
    stores = tuple(config.stores[s] for s in (w.store, *w.sync_to))
    return (w, config.sources[w.source], stores)


class _Watch:
    def __init__(self, config: Config, w: WatchConfig, metrics: Metrics, emit: Any) -> None:
        self.config = config
        self.w = w
        self.name = watch_name(w)
        self.metrics = metrics
        self.emit = emit
        self.stop_event = threading.Event()
        self.error: str | None = None
        self.info: dict[str, Any] = {"ready": False, "snapshots": 0}
        self.thread = threading.Thread(target=self._run, name=f"watch-{w.source}", daemon=True)

    def _run(self) -> None:
        try:
            watchmod = importlib.import_module("casbackup.ops.watch")
        except ImportError:
            self.error = "ops.watch is not available in this version"
            self.emit("watch-unavailable", watch=self.name, store=self.w.store, error=self.error)
            return
        try:
            with contextlib.ExitStack() as stack:
                store = stack.enter_context(open_configured(self.config.stores[self.w.store]))
                replicas = [
                    watchmod.Replica(stack.enter_context(open_configured(self.config.stores[r])), r)
                    for r in self.w.sync_to
                ]
                src = self.config.sources[self.w.source]
                opts = watchmod.WatchOptions(debounce=self.w.debounce, max_delay=self.w.max_delay,
                                             archive=archive_options(src))  # fmt: skip
                watchmod.watch(store, list(src.paths), opts, _observer(watchmod, self),
                               self.stop_event, replicas)  # fmt: skip
        except CasError as e:
            self.error = str(e)
        except Exception as e:  # keep the daemon alive, report the bug
            self.error = f"internal error {type(e).__name__}: {e}"
        if self.error is not None:
            self.info["error"] = self.error
            self.emit("watch-error", watch=self.name, store=self.w.store, error=self.error)


def _observer(watchmod: Any, w: _Watch) -> Any:
    """A ``WatchObserver`` that turns the watch's reports into events, metrics, status."""

    class Reporter(watchmod.WatchObserver):  # type: ignore[misc]
        def ready(self) -> None:
            w.info["ready"] = True
            w.emit("watch-ready", watch=w.name, store=w.w.store)

        def snapshot(self, info: Any) -> None:
            if info.snapshot is None:
                return  # nothing had changed
            w.info["snapshots"] += 1
            w.info["last_snapshot"] = info.snapshot.id
            w.info["last_snapshot_time"] = time.time()
            if info.latency_s is not None:
                w.info["last_latency"] = info.latency_s
                w.metrics.watch(w.w.source, w.w.store, info.latency_s)
            w.emit("watch-snapshot", watch=w.name, store=w.w.store, snapshot=info.snapshot.id,
                   scan=info.scan, reason=info.reason,
                   latency=None if info.latency_s is None else round(info.latency_s, 3))

        def synced(self, replica: str, copied: Any, latency_s: float | None) -> None:
            w.emit("watch-sync", watch=w.name, store=replica, snapshot=copied.src_id,
                   copy=copied.dst_id,
                   latency=None if latency_s is None else round(latency_s, 3))

        def warn(self, path: str, message: str) -> None:
            w.emit("watch-warning", watch=w.name, store=w.w.store, path=path, message=message)

    return Reporter()


class WatchSet:
    def __init__(self, metrics: Metrics, emit: Any) -> None:
        self.metrics = metrics
        self.emit = emit
        self._watches: dict[str, tuple[tuple[Any, ...], _Watch]] = {}

    def update(self, config: Config) -> None:
        wanted = {watch_name(w): w for w in config.watches}
        for name, (key, watch) in list(self._watches.items()):
            w = wanted.get(name)
            if w is None or _key(config, w) != key or watch.error is not None:
                self._stop([watch])
                del self._watches[name]
        for name, w in wanted.items():
            if name not in self._watches:
                watch = _Watch(config, w, self.metrics, self.emit)
                self._watches[name] = (_key(config, w), watch)
                self.emit("watch-start", watch=name, store=w.store, paths=list(
                    config.sources[w.source].paths))
                watch.thread.start()

    def status(self) -> dict[str, dict[str, Any]]:
        return {n: dict(w.info) for n, (_, w) in self._watches.items()}

    def dead(self) -> dict[str, str]:
        return {n: w.error for n, (_, w) in self._watches.items() if w.error is not None}

    def stop(self) -> dict[str, dict[str, Any]]:
        """Stop every watch (a snapshot under way finishes); their final status."""
        self._stop([w for _, w in self._watches.values()])
        final = self.status()
        self._watches.clear()
        return final

    def _stop(self, watches: list[_Watch]) -> None:
        for w in watches:
            w.stop_event.set()
        deadline = time.monotonic() + STOP_WAIT
        for w in watches:
            w.thread.join(max(0.0, deadline - time.monotonic()))
