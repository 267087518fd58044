"""The daemon loop's plumbing: the queue of runs with one job per store, and the waker.

Invariants:

* A job has at most one ``Run`` in the queue (waiting, waiting for a retry, or running);
  later slots of a queued job are the schedule's business, never a second run.
* ``ready`` hands out runs in the order they were added, skipping (not reordering) those
  whose retry time has not come or whose stores are busy; a run it hands out holds every
  store it needs until ``release``. A store is held by at most one run.
* ``Waker.set`` is async-signal-safe (one ``write`` to a non-blocking pipe, no lock), so
  signal handlers and threads can both wake the loop.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class Waker:
    """Wakes the loop from signal handlers and threads: a non-blocking self-pipe."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending
            os.write(self._w, b"!")

    def wait(self, timeout: float) -> None:
        """Sleep until ``set`` or ``timeout`` seconds, then forget pending wake-ups."""
        with contextlib.suppress(InterruptedError):
            select.select([self._r], [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._r, 4096):
                pass

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


@dataclass
class Run:
    name: str
    scheduled: datetime
    catch_up: bool
    attempt: int = 0
    first_started: datetime | None = None
    not_before: float = 0.0  # monotonic time before which a retry must not start
    process: Any = None  # the JobProcess while it runs
    stores: tuple[str, ...] = ()
    stopped: bool = False  # stopped by a shutdown: not a result


class RunQueue:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.waiting: list[str] = []  # names not running, in the order they came
        self.busy: dict[str, str] = {}  # store name -> the run holding it

    def __contains__(self, name: str) -> bool:
        return name in self.runs

    def __getitem__(self, name: str) -> Run:
        return self.runs[name]

    def add(self, run: Run) -> None:
        if run.name in self.runs:
            raise ValueError(f"job {run.name} is already queued")
        self.runs[run.name] = run
        self.waiting.append(run.name)

    def ready(self, now: float, stores_of: Callable[[str], tuple[str, ...] | None]) -> list[Run]:
        """The runs that may start now, holding their stores. ``stores_of(name)`` is None
        for a job that no longer exists: its run is dropped."""
        out = []
        for name in list(self.waiting):
            run = self.runs[name]
            stores = stores_of(name)
            if stores is None:
                self.drop(name)
                continue
            if run.not_before > now or any(s in self.busy for s in stores):
                continue
            self.waiting.remove(name)
            for s in stores:
                self.busy[s] = name
            run.stores = stores
            out.append(run)
        return out

    def release(self, name: str) -> Run:
        """A run ended: its stores are free again."""
        run = self.runs[name]
        for s in run.stores:
            if self.busy.get(s) == name:
                del self.busy[s]
        run.stores, run.process = (), None
        return run

    def retry(self, name: str, not_before: float) -> None:
        run = self.runs[name]
        run.attempt += 1
        run.not_before = not_before
        self.waiting.append(name)

    def drop(self, name: str) -> None:
        self.runs.pop(name, None)
        if name in self.waiting:
            self.waiting.remove(name)

    def drop_waiting(self) -> None:
        for name in list(self.waiting):
            self.drop(name)

    def running(self) -> list[Run]:
        return [r for r in self.runs.values() if r.name not in self.waiting]

    def next_retry(self) -> float | None:
        return min((self.runs[n].not_before for n in self.waiting), default=None)
