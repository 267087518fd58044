"""Injected time, so retention, locks and the daemon can be tested with a fake clock.

Invariant: code that decides by time calls ``Clock.now()`` / ``Clock.monotonic()``, never
``time.time()`` directly; tests pass a ``FakeClock``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeClock(Clock):
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.m = 0.0

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.m

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.m += seconds


SYSTEM = Clock()
