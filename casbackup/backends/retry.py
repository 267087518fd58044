"""RetryingBackend: retries ``TransientError`` with exponential backoff and full jitter.

Invariants:
- Only ``TransientError`` is retried; ``NotFound``, ``AlreadyExists`` and ``PermanentError``
  (and anything that is not a ``BackendError``) propagate at once.
- At most ``attempts`` tries per call; the delay before try ``n+1`` is uniform in
  ``[0, min(max_delay, base_delay * 2**n)]`` ("full jitter"). After the last try the final
  ``TransientError`` is raised (chained to the last cause) with "gave up after N attempts".
- **Ambiguous writes.** A ``TransientError`` may arrive *after* the operation took effect
  (the response was lost). So:
  * ``put(overwrite=False)`` that sees ``AlreadyExists`` on a *retry* reads the stored
    object back: if its bytes equal ours, the earlier attempt (or an identical writer --
    the same thing for content-addressed keys) succeeded and the put returns normally;
    otherwise ``AlreadyExists`` is raised.
  * ``delete`` that sees ``NotFound`` on a retry returns normally (the object is gone,
    which is what the caller asked for).
  * ``put(overwrite=True)`` is idempotent and simply retried.
- Every retry (a try after a ``TransientError``) is counted process-wide
  (``retries_so_far``) for the metrics, and reported, before its delay, to the listener
  set with ``set_retry_listener`` (the CLI prints one line per retry: what, why, how
  long it waits, which try).
- **Fast failure.** ``Unreachable`` (connection refused, no route) before this backend
  has ever completed a call is not retried: the URL is wrong or the server is down, and
  retrying would only make the user wait ~30 s for the same answer. The error names the
  store and what to check. Once a call succeeded, ``Unreachable`` is retried like any
  ``TransientError`` (a server restarting under a running backup).
- ``list`` is resumable: if the listing fails part-way, it is restarted and the keys up to
  and including the last one already yielded are skipped (listings are sorted), so the
  caller sees every key once, in order. The try budget resets whenever a key is yielded.
  A first try passes on every key as the endpoint gives it: a listing out of order or
  with a key repeated (a non-conforming S3 clone) never loses a key by this skipping;
  such a listing that fails part-way is not resumed (which keys it gave is unknown) and
  its failure is raised, as is a resumed try that comes out of order.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import AlreadyExists, NotFound, TransientError, Unreachable
from .base import Backend, ObjectInfo, Properties

T = TypeVar("T")


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen: ``attempt`` (2…``attempts``) starts after ``delay``
    seconds because the try before failed with ``reason``."""

    store: str
    reason: str
    delay: float
    attempt: int
    attempts: int


_retries = 0
_retries_mu = threading.Lock()
_listener: Callable[[RetryEvent], None] | None = None


def set_retry_listener(fn: Callable[[RetryEvent], None] | None) -> None:
    """Call ``fn`` before every retry of every ``RetryingBackend`` in this process; it
    must not raise (an exception from it is dropped)."""
    global _listener
    _listener = fn


def retries_so_far() -> int:
    """Backend requests retried in this process so far (for the job metrics)."""
    return _retries


def _count_retry() -> None:
    global _retries
    with _retries_mu:
        _retries += 1


class RetryingBackend:
    """Wrap ``inner`` so transient failures are retried (see module docstring)."""

    def __init__(
        self,
        inner: Backend,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        label: str | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.inner = inner
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.label = label or repr(inner)
        self._reached = False  # some call completed: the store exists at this address

    def __repr__(self) -> str:
        return f"RetryingBackend({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        # optional capabilities of the inner backend (``temp_writer`` of a local one) pass
        # through; ``hasattr`` stays False when the inner backend lacks them
        if name == "temp_writer":
            return getattr(self.inner, name)
        if name == "get_into":
            inner = self.inner.get_into  # type: ignore[attr-defined]
            return lambda key, offset, buf: self._call(lambda: inner(key, offset, buf))
        raise AttributeError(name)

    def _delay(self, failures: int) -> float:
        return self._rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (failures - 1)))

    def _call(self, fn: Callable[[], T], retried: list[bool] | None = None) -> T:
        """Run ``fn`` up to ``attempts`` times; ``retried[0]`` is set once a retry happens."""
        for failures in range(1, self.attempts + 1):
            try:
                out = fn()
                self._reached = True
                return out
            except (NotFound, AlreadyExists):
                self._reached = True  # the store answered
                raise
            except TransientError as exc:
                self._give_up_early(exc)
                if failures == self.attempts:
                    if self.attempts == 1:
                        raise
                    raise TransientError(
                        f"{exc} (gave up after {self.attempts} attempts)", exc.key
                    ) from exc
                if retried is not None:
                    retried[0] = True
                self._wait(exc, failures)
        raise AssertionError("unreachable")

    def _give_up_early(self, exc: TransientError) -> None:
        if isinstance(exc, Unreachable) and not self._reached:
            raise Unreachable(
                f"{exc}; nothing answers at {self.label}: check the store URL (host, port, "
                "endpoint) and that the server is running", exc.key) from exc

    def _wait(self, exc: TransientError, failures: int) -> None:
        """Count, report and sleep before try ``failures + 1``."""
        _count_retry()
        delay = self._delay(failures)
        listener = _listener
        if listener is not None:
            with contextlib.suppress(Exception):  # a listener must not break the retry
                listener(RetryEvent(self.label, str(exc), delay, failures + 1, self.attempts))
        self._sleep(delay)

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        retried = [False]
        try:
            self._call(lambda: self.inner.put(key, data, overwrite=overwrite), retried)
        except AlreadyExists as exists:
            if not retried[0]:
                raise
            # An earlier attempt may have written the object before its failure was
            # reported: equal bytes mean that write (or an identical one) succeeded.
            try:
                stored = self._call(lambda: self.inner.get(key))
            except NotFound:
                raise exists from None
            if stored != bytes(data):
                raise

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._call(lambda: self.inner.get(key, offset=offset, length=length))

    def stat(self, key: str) -> ObjectInfo:
        return self._call(lambda: self.inner.stat(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        last: str | None = None  # the highest key given
        failures = 0
        resumed = False  # a restart: skip what the tries before gave
        ordered = True  # every key so far above the one before it
        while True:
            prev: str | None = None  # this try's key before
            it: Iterator[ObjectInfo] | None = None
            while True:
                try:
                    if it is None:
                        it = iter(self.inner.list(prefix))
                    info = next(it, None)
                except TransientError as exc:
                    self._give_up_early(exc)
                    failures += 1
                    if not ordered:
                        raise TransientError(f"{exc} (the listing came out of order: it "
                                             "cannot be resumed)", exc.key) from exc
                    if failures >= self.attempts:
                        raise TransientError(
                            f"{exc} (gave up after {self.attempts} attempts)", exc.key
                        ) from exc
                    self._wait(exc, failures)
                    resumed = True
                    break
                if info is None:
                    self._reached = True
                    return
                if prev is not None and info.key <= prev:
                    if resumed:  # which keys it would skip were given is unknown
                        raise TransientError(f"listing {prefix or '/'} came out of order "
                                             "after a retry: it cannot be resumed", prefix)
                    ordered = False
                prev = info.key
                if resumed and last is not None and info.key <= last:
                    continue
                if last is None or info.key > last:
                    last = info.key
                self._reached = True
                failures = 0  # progress: a later hiccup gets a fresh budget
                yield info

    def delete(self, key: str) -> None:
        retried = [False]
        try:
            self._call(lambda: self.inner.delete(key), retried)
        except NotFound:
            if not retried[0]:
                raise

    def close(self) -> None:
        self.inner.close()

    def properties(self) -> Properties:
        return self.inner.properties()
