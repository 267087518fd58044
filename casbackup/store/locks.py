"""Locks: a running *session*'s ``locks/<id>`` object (DESIGN §8) -- taking it, its
heartbeat, releasing it. Lock objects as read, and the liveness rule, are
``lockobjects.py``'s; this module re-exports them (it is the store's public face for
locks: tests/unit/test_layers.py).

Invariants:
- A session holds exactly one lock object at every moment from ``acquire`` to
  ``release`` (a heartbeat writes the new object before deleting the old one) and keeps
  one random ``session`` id across heartbeats, so a lock listing made at any moment of
  its life names it.
- Kinds: *shared* (backup, sync, watch rounds, restore, verify, stats, diff), *maintenance*
  (gc: exclusive only against other maintenance and exclusive sessions), *exclusive*
  (repair: excludes everything). Acquiring is put-then-check: write ours, list again,
  back off if a conflicting live lock exists; two racers may both back off, never both
  proceed.
- A session measures ``max_gap``, the largest backend-time gap between two of its own
  consecutive lock objects; a gap above ``SELF_STALE`` means another host may have seen
  it stale (writers then re-check every pack they use before committing). A heartbeat
  that finds its previous lock object removed by someone else counts as such a gap.
- An unreadable lock object that is not yet stale refuses the listing a session decides
  on (``Locked``): it may be a live session's.
- ``release`` is idempotent and safe on an unwinding path (KeyboardInterrupt, SIGTERM
  turned into an exception): it never raises a backend error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .. import serde
from ..clock import SYSTEM, Clock
from ..errors import CasError, Locked, NotFound, PermanentError, UsageError
from ..ids import LOCK, object_name
from . import identity as ident
from .identity import Identity
from .layout import lock_key
from .lockobjects import (
    LOCK_MAX,
    RELIST,
    SKEW,
    STALE,
    LockInfo,
    by_session,
    list_locks,
    live_sessions,
    probe_mtime,
    remove_stale,
)
from .store import Store

REFRESH = min(60.0, STALE / 10)
SELF_STALE = STALE / 2
OUTWAIT_MAX = 600.0  # seconds a session waits out brief conflicting ones (``acquire``)

log = logging.getLogger("casbackup")


@dataclass
class Session:
    """One running operation's lock. ``writer`` sessions commit snapshots."""

    store: Store
    operation: str
    exclusive: bool = False
    maintenance: bool = False
    clock: Clock = SYSTEM
    me: Identity = field(default_factory=ident.current)
    heartbeat: bool = True
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    name: str = ""
    intent: bytes | None = None
    max_gap: float = 0.0
    stale_gaps: int = 0  # gaps above SELF_STALE seen between our lock objects
    last_mtime: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _mu: threading.Lock = field(default_factory=threading.Lock)

    def _write(self) -> str:
        me = self.me
        data = self.store.codec.seal(LOCK, serde.pack({
            "session": self.id, "exclusive": self.exclusive, "maintenance": self.maintenance,
            "operation": self.operation, "hostname": me.hostname, "pid": me.pid,
            "pid_start": me.pid_start, "machine": me.machine, "boot": me.boot,
            "pidns": me.pidns, "username": me.username, "time": self.clock.time(),
            "intent": self.intent, "nonce": os.urandom(8),
        }))
        name = object_name(data)
        key = lock_key(name)
        self.store.backend.put(key, data)
        try:
            mtime = self.store.backend.stat(key).mtime or self.clock.monotonic()
        except NotFound:
            mtime = self.clock.monotonic()  # removed by `unlock --remove-all`
        if self.last_mtime:
            gap = mtime - self.last_mtime
            self.max_gap = max(self.max_gap, gap)
            self.stale_gaps += gap > SELF_STALE
        self.last_mtime = mtime
        return name

    def listing(self) -> tuple[list[LockInfo], float]:
        """The lock objects now, and our own lock's mtime as the backend's "now" (the
        newest object of our session in the listing).

        A lock object that is there but cannot be read (damaged, or an endpoint that lists
        and stats it but refuses its content) may be a live session's: unless its mtime is
        older than the stale age (a live session replaces its object every REFRESH), the
        listing is refused with ``Locked`` -- gc and lock conflicts decide liveness from it,
        and must not take an unreadable session for none (restic refuses such a lock too).
        """
        bad: list[tuple[str, float]] = []
        locks = list_locks(self.store, bad)
        # any object of our session in the listing (not only the one we hold now: a
        # heartbeat may replace it while the listing is read) is the backend's recent
        # "now"; none (our lock removed by `unlock --remove-all`): the SKEW rule
        ref = max((lk.mtime for lk in locks if lk.session == self.id), default=0.0)
        fresh = [n for n, mtime in bad if not (ref and mtime) or mtime > ref - STALE]
        if fresh:
            raise Locked(
                f"lock object {fresh[0]} cannot be read (damaged, or the endpoint refuses "
                "it), so another session may hold the store; if no other casbackup process "
                "uses it, `casbackup unlock --remove-all` removes it")
        return locks, ref

    def others(self, live_only: bool = True) -> list[LockInfo]:
        """Other sessions (newest object of each), live ones only unless told."""
        locks, ref = self.listing()
        found = (live_sessions(locks, self.clock.time(), ref, self.me) if live_only
                 else by_session(locks))
        return [lk for lk in found.values() if lk.session != self.id]

    def _conflicts(self) -> list[LockInfo]:
        return [lk for lk in self.others()
                if lk.conflicts_with(self.exclusive, self.maintenance)]

    def acquire(self, retry: float = 0.0, outwait: frozenset[str] = frozenset(),
                note: Callable[[str], None] | None = None) -> None:
        """Take the lock, trying again for RETRY seconds while a conflicting session is
        live. Conflicting sessions that are all of an operation in OUTWAIT (brief ones
        by design: an index consolidation) are waited for up to OUTWAIT_MAX seconds
        whatever RETRY, with one line to NOTE."""
        deadline = self.clock.monotonic() + retry
        patience = self.clock.monotonic() + OUTWAIT_MAX
        noted = False
        while True:
            self.name = self._write()
            try:
                found = self._conflicts()
            except BaseException:  # an unreadable listing, Ctrl-C: leave no lock behind
                self._delete(self.name)
                self.name = ""
                raise
            if not found:
                break
            self._delete(self.name)
            self.name = ""
            brief = bool(outwait) and all(lk.operation in outwait for lk in found)
            if brief and self.clock.monotonic() < patience:
                if note is not None and not noted:
                    lk = found[0]
                    note(f"waiting for {lk.operation} (pid {lk.pid} on {lk.hostname}) "
                         "to finish")
                    noted = True
                self.clock.sleep(1.0)
                continue
            if self.clock.monotonic() >= deadline:
                lk = found[0]
                how = ("exclusively " if lk.exclusive
                       else "for maintenance " if lk.maintenance else "")
                raise Locked(
                    f"store is locked {how}by {lk.operation} (pid {lk.pid} on "
                    f"{lk.hostname}, user {lk.username}); retry later, or "
                    "`casbackup unlock` if it is stale")
            self.clock.sleep(min(5.0, max(0.2, retry / 20)))
        if self.heartbeat:
            self._thread = threading.Thread(target=self._beat_loop, daemon=True, name="lock")
            self._thread.start()

    def beat(self) -> None:
        """Replace our lock object by a fresh one (new first, then the old one goes)."""
        with self._mu:
            if not self.name:
                return
            old, self.name = self.name, self._write()
            if not self._present(old):
                # removed by someone else (``unlock --remove-all``): a gc may have taken
                # this session for gone meanwhile, as after a stale gap -- so count one,
                # and a writer's checks of what it stored and indexed apply (W1b, W2)
                self.stale_gaps += 1
        self._delete(old)

    def _present(self, name: str) -> bool:
        try:
            self.store.backend.stat(lock_key(name))
        except NotFound:
            return False
        except CasError:
            return True  # unknown: the other checks still hold
        return True

    def set_intent(self, root: bytes) -> None:
        """Announce the root tree this writer is about to commit (gc marks from it)."""
        self.intent = root
        self.beat()

    def _beat_loop(self) -> None:
        while not self._stop.wait(REFRESH):
            with contextlib.suppress(CasError):
                self.beat()  # try again next beat; the lock is stale only after STALE

    def _delete(self, name: str) -> None:
        with contextlib.suppress(CasError):
            self.store.backend.delete(lock_key(name))

    def release(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join()
        with self._mu:
            name, self.name = self.name, ""
        if name:
            self._delete(name)


READ_ONLY_WARNING = ("cannot write a lock (read-only store?): continuing without one; gc on "
                     "other hosts cannot see this {op}")


@contextlib.contextmanager
def session(store: Store, operation: str, *, exclusive: bool = False,
            maintenance: bool = False, retry: float = 0.0, clock: Clock = SYSTEM,
            no_lock: bool = False, read_only: bool = False,
            me: Identity | None = None, outwait: frozenset[str] = frozenset(),
            note: Callable[[str], None] | None = None) -> Iterator[Session | None]:
    """Hold a session lock for the block; yields the Session (None without a lock).

    ``no_lock`` (read-only operations only) takes none. A ``read_only`` operation whose
    lock cannot be written (PermanentError: read-only filesystem, no space, access
    denied) warns once and continues without a lock."""
    no_lock = no_lock or store.no_lock  # the CLI's --no-lock
    if no_lock:
        if not read_only:
            raise UsageError(f"--no-lock: {operation} writes to the store, it needs a lock")
        yield None
        return
    held = Session(store, operation, exclusive, maintenance, clock, me or ident.current())
    try:
        held.acquire(retry, outwait, note)
    except PermanentError:
        if not read_only:
            raise
        (store.on_warning or log.warning)(READ_ONLY_WARNING.format(op=operation))
        yield None
        return
    try:
        yield held
    finally:
        held.release()


def shared_lock(store: Store, operation: str, retry: float = 0.0, clock: Clock = SYSTEM,
                no_lock: bool = False, read_only: bool = False
                ) -> contextlib.AbstractContextManager[Session | None]:
    return session(store, operation, retry=retry, clock=clock, no_lock=no_lock,
                   read_only=read_only)


def maintenance_lock(store: Store, operation: str, retry: float = 0.0,
                     clock: Clock = SYSTEM) -> contextlib.AbstractContextManager[Session | None]:
    return session(store, operation, maintenance=True, retry=retry, clock=clock)


def exclusive_lock(store: Store, operation: str, retry: float = 0.0,
                   clock: Clock = SYSTEM) -> contextlib.AbstractContextManager[Session | None]:
    return session(store, operation, exclusive=True, maintenance=True, retry=retry,
                   clock=clock)


__all__ = ["LOCK_MAX", "OUTWAIT_MAX", "REFRESH", "RELIST", "SELF_STALE", "SKEW", "STALE",
           "LockInfo", "Session", "by_session", "exclusive_lock", "list_locks",
           "live_sessions", "maintenance_lock", "probe_mtime", "remove_stale", "session",
           "shared_lock"]
