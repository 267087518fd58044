"""FaultyBackend: a wrapper that injects failures, for tests of retries and crash ordering.

Invariants:
- Every call is recorded in ``calls`` as ``(op, key)`` (``key`` is the prefix for
  ``list``), and every *successful* put in ``puts`` -- the order objects became visible.
- A ``Fault`` matches a call by operation name and key prefix; it skips its first ``after``
  matching calls, then fires ``times`` times (``None``: forever). ``when="before"`` raises
  without calling the inner backend; ``when="after"`` performs the operation and *then*
  raises -- the "ambiguous failure" where a write landed but its response was lost.
- ``crash_after_puts=N``: the first N puts succeed; the next put raises ``Crash`` *before*
  writing, and from then on every operation raises ``Crash`` (the process is dead).
  ``Crash`` derives from ``BaseException`` so ``except Exception`` handlers in the code
  under test cannot swallow it -- just like a real crash cannot be caught.
- Counters and lists are guarded by one lock: safe under concurrent callers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from ..errors import BackendError, TransientError
from .base import Backend, ObjectInfo, Properties

Op = Literal["put", "get", "stat", "list", "delete"]
OPS: frozenset[str] = frozenset({"put", "get", "stat", "list", "delete"})


class Crash(BaseException):
    """Simulated process death raised by ``FaultyBackend(crash_after_puts=...)``."""


@dataclass
class Fault:
    """One failure rule (see module docstring)."""

    ops: frozenset[str] = OPS
    key_prefix: str = ""
    after: int = 0
    times: int | None = 1
    error: type[BackendError] = TransientError
    when: Literal["before", "after"] = "before"
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.ops, str):
            self.ops = frozenset({self.ops})
        unknown = set(self.ops) - OPS
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}")

    def _matches(self, op: str, key: str) -> bool:
        """Count a matching call; True when this call must fail."""
        if op not in self.ops or not key.startswith(self.key_prefix):
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


class FaultyBackend:
    """Wrap ``inner``, failing the calls chosen by ``faults`` (and optionally crashing)."""

    def __init__(
        self,
        inner: Backend,
        faults: list[Fault] | None = None,
        *,
        crash_after_puts: int | None = None,
    ) -> None:
        self.inner = inner
        self.faults: list[Fault] = list(faults or [])
        self.crash_after_puts = crash_after_puts
        self.crashed = False
        self.calls: list[tuple[str, str]] = []
        self.puts: list[str] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FaultyBackend({self.inner!r})"

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _enter(self, op: str, key: str) -> Fault | None:
        """Record the call; raise ``Crash`` or a 'before' fault; return an 'after' fault."""
        with self._lock:
            self.calls.append((op, key))
            if self.crashed:
                raise Crash(f"backend crashed earlier; {op} {key}")
            if (
                op == "put"
                and self.crash_after_puts is not None
                and len(self.puts) >= self.crash_after_puts
            ):
                self.crashed = True
                raise Crash(f"crash before put {key} (after {len(self.puts)} puts)")
            for fault in self.faults:
                if fault._matches(op, key):
                    if fault.when == "before":
                        raise fault.error(f"injected {fault.error.__name__} on {op} {key}", key)
                    return fault
        return None

    @staticmethod
    def _exit(fault: Fault | None, op: str, key: str) -> None:
        if fault is not None:
            raise fault.error(f"injected {fault.error.__name__} after {op} {key}", key)

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        fault = self._enter("put", key)
        self.inner.put(key, data, overwrite=overwrite)
        with self._lock:
            self.puts.append(key)
        self._exit(fault, "put", key)

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        fault = self._enter("get", key)
        data = self.inner.get(key, offset=offset, length=length)
        self._exit(fault, "get", key)
        return data

    def stat(self, key: str) -> ObjectInfo:
        fault = self._enter("stat", key)
        info = self.inner.stat(key)
        self._exit(fault, "stat", key)
        return info

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        fault = self._enter("list", prefix)
        items = list(self.inner.list(prefix))
        if fault is not None and fault.when == "after":
            # Fail part-way: yield the first half, then raise (exercises resumable lists).
            yield from items[: len(items) // 2]
            self._exit(fault, "list", prefix)
        yield from items

    def delete(self, key: str) -> None:
        fault = self._enter("delete", key)
        self.inner.delete(key)
        self._exit(fault, "delete", key)

    def close(self) -> None:
        self.inner.close()

    def properties(self) -> Properties:
        return self.inner.properties()
