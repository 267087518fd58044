"""Graceful stop for long-running commands (``watch``, ``sync --watch``).

Invariant: the first SIGINT or SIGTERM only sets the returned event, so the operation
finishes (or abandons before its commit point) and exits 0; a second one interrupts at
once (``KeyboardInterrupt`` / default SIGTERM): the snapshot being the commit point, that
leaves only unreferenced packs. Handlers are restored on exit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    stop = threading.Event()

    def first(signum: int, frame: FrameType | None) -> None:
        # never take a lock in a signal handler: the main thread may hold it
        threading.Thread(target=stop.set, daemon=True).start()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    old = {s: signal.signal(s, first) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
