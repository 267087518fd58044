"""Locks: ``locks/<id>`` objects announcing a running operation (DESIGN §5.6).

Invariants:
- A backup, restore or verify holds a *shared* lock; gc (and forget --prune, repair)
  holds an *exclusive* one. Shared locks coexist; an exclusive lock excludes all others.
- Acquiring is put-then-check: write our lock, then list again; if a conflicting live
  lock exists, remove ours and fail (or retry until ``retry`` seconds passed). Two
  racing writers may both back off, never both proceed.
- A lock is refreshed by a heartbeat thread every ``REFRESH`` seconds (write a new
  object, then delete the old one). A lock is *stale* when it was not refreshed for
  ``STALE`` seconds, or when it names this host and a pid that is not running; stale locks
  are ignored by acquirers and removed by ``unlock``.
- A lock object is sealed like any other (kind ``lock``), named by the BLAKE3 of its bytes.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .. import serde
from ..clock import SYSTEM, Clock
from ..crypto.codec import LOCK
from ..errors import CasError, IntegrityError, Locked, NotFound
from ..ids import object_name
from .store import Store

REFRESH = 60.0
STALE = 30 * 60.0


@dataclass(frozen=True, slots=True)
class LockInfo:
    name: str
    exclusive: bool
    operation: str
    hostname: str
    pid: int
    username: str
    time: float

    def stale(self, now: float) -> bool:
        if now - self.time > STALE:
            return True
        if self.hostname == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False


def list_locks(store: Store) -> list[LockInfo]:
    out = []
    for info in store.backend.list("locks/"):
        name = info.key.rsplit("/", 1)[1]
        try:
            m = serde.unpack(store.read_object("locks/", name, LOCK), "lock")
            out.append(
                LockInfo(
                    name,
                    bool(m["exclusive"]),
                    str(m["operation"]),
                    str(m["hostname"]),
                    int(m["pid"]),
                    str(m["username"]),
                    float(m["time"]),
                )
            )
        except (NotFound, IntegrityError):
            continue  # removed meanwhile, or damaged: unlock --remove-all deals with it
        except (KeyError, TypeError, ValueError):
            continue
    return out


def remove_stale(store: Store, clock: Clock = SYSTEM, all_locks: bool = False) -> list[LockInfo]:
    removed = []
    now = clock.time()
    for lk in list_locks(store):
        if all_locks or lk.stale(now):
            with contextlib.suppress(NotFound):
                store.backend.delete(f"locks/{lk.name}")
            removed.append(lk)
    return removed


class _Held:
    def __init__(self, store: Store, exclusive: bool, operation: str, clock: Clock) -> None:
        self.store = store
        self.exclusive = exclusive
        self.operation = operation
        self.clock = clock
        self.name = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mu = threading.Lock()

    def _write(self) -> str:
        data = self.store.codec.seal(
            LOCK,
            serde.pack(
                {
                    "exclusive": self.exclusive,
                    "operation": self.operation,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "username": _user(),
                    "time": self.clock.time(),
                    "nonce": os.urandom(8),
                }
            ),
        )
        name = object_name(data)
        self.store.backend.put(f"locks/{name}", data)
        return name

    def _conflicts(self) -> list[LockInfo]:
        now = self.clock.time()
        return [
            lk
            for lk in list_locks(self.store)
            if lk.name != self.name and not lk.stale(now) and (self.exclusive or lk.exclusive)
        ]

    def acquire(self, retry: float) -> None:
        deadline = self.clock.monotonic() + retry
        while True:
            found = self._conflicts()
            if not found:
                self.name = self._write()
                found = self._conflicts()
                if not found:
                    break
                self._delete(self.name)
                self.name = ""
            if self.clock.monotonic() >= deadline:
                lk = found[0]
                raise Locked(
                    f"store is locked {'exclusively ' if lk.exclusive else ''}by "
                    f"{lk.operation} (pid {lk.pid} on {lk.hostname}, user {lk.username}); "
                    "retry later, or `casbackup unlock` if it is stale"
                )
            self.clock.sleep(min(5.0, max(0.2, retry / 20)))
        self._thread = threading.Thread(target=self._heartbeat, daemon=True, name="lock")
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(REFRESH):
            try:
                with self._mu:
                    old, self.name = self.name, self._write()
                self._delete(old)
            except CasError:
                continue  # try again next beat; the lock is stale only after STALE

    def _delete(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self.store.backend.delete(f"locks/{name}")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mu:
            if self.name:
                self._delete(self.name)


@contextlib.contextmanager
def _lock(
    store: Store, exclusive: bool, operation: str, retry: float, clock: Clock
) -> Iterator[None]:
    held = _Held(store, exclusive, operation, clock)
    held.acquire(retry)
    try:
        yield
    finally:
        held.release()


def shared_lock(
    store: Store, operation: str, retry: float = 0.0, clock: Clock = SYSTEM
) -> contextlib.AbstractContextManager[None]:
    return _lock(store, False, operation, retry, clock)


def exclusive_lock(
    store: Store, operation: str, retry: float = 0.0, clock: Clock = SYSTEM
) -> contextlib.AbstractContextManager[None]:
    return _lock(store, True, operation, retry, clock)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
