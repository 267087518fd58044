"""Signals of the CLI: SIGINT and SIGTERM unwind the command; ``watch``/``sync --watch`` stop
gracefully first.

Invariants:
- ``install`` (called once by ``main``) makes SIGINT raise ``KeyboardInterrupt`` and
  SIGTERM raise ``SigTerm`` (a ``KeyboardInterrupt``) in the main thread. Both are
  ``BaseException``s, so no ``except CasError`` / ``except Exception`` in ops can swallow
  them, and every ``with``/``finally`` on the way out runs: locks are released, temporary
  files removed. ``received()`` says which signal arrived; ``main`` exits 130 (SIGINT) or
  143 (SIGTERM, 128 + 15, as a process killed by it would) with one line built from
  ``undone`` — what a command announced it would leave unfinished (``on_interrupt``).
- ``graceful_stop``: the first SIGINT or SIGTERM only sets the returned event, so the
  operation finishes (or abandons before its commit point) and exits 0; a second one
  interrupts at once as above: the snapshot being the commit point, that leaves only
  unreferenced packs. The previous handlers are restored on exit.
- A handler never takes a lock: the main thread may hold it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class SigTerm(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises ``KeyboardInterrupt``."""


_state: dict[str, object] = {"received": None, "undone": None}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _state["received"] = signum
    raise SigTerm() if signum == signal.SIGTERM else KeyboardInterrupt()


def install() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _interrupt)


def received() -> int | None:
    """The signal that interrupted the command (None: none did)."""
    got = _state["received"]
    return got if isinstance(got, int) else None


def on_interrupt(undone: str) -> None:
    """Announce what an interrupt from now on leaves undone, e.g. ``restore of 1a2b3c4d
    into /tmp/x is incomplete``; ``main`` prints it after ``interrupted:``."""
    _state["undone"] = undone


def undone() -> str | None:
    what = _state["undone"]
    return what if isinstance(what, str) else None


@contextlib.contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    stop = threading.Event()

    def first(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=stop.set, daemon=True).start()
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _interrupt)

    old = {s: signal.signal(s, first) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
