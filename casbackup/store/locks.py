"""Locks: ``locks/<id>`` objects announcing a running *session* (DESIGN §8).

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
- A lock is *dead* because its pid is not running (or runs with another start time) only
  when its machine id, boot id and pid namespace all equal ours. Otherwise it is *stale*
  only by heartbeat age judged by the backend's clock: the lock object's mtime against the
  mtime of a lock object we just wrote, older by more than ``STALE``. Without mtimes the
  writer's time is compared with ours with a further ``SKEW`` margin. Lock objects of the
  old format (no session id) are never dead by pid.
- A session measures ``max_gap``, the largest backend-time gap between two of its own
  consecutive lock objects; a gap above ``SELF_STALE`` means another host may have seen
  it stale (writers then re-check every pack they use before committing). A heartbeat
  that finds its previous lock object removed by someone else counts as such a gap.
- ``release`` is idempotent and safe on an unwinding path (KeyboardInterrupt, SIGTERM
  turned into an exception): it never raises a backend error.
- A lock object is sealed like any other (kind ``lock``), named by the BLAKE3 of its bytes.
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
from ..errors import (
    CasError,
    IntegrityError,
    Locked,
    NotFound,
    PermanentError,
    TransientError,
    UsageError,
)
from ..ids import LOCK, object_name
from . import identity as ident
from .identity import Identity
from .layout import LOCKS_DIR, lock_key, name_of
from .store import Store

STALE = float(os.environ.get("CASBACKUP_TEST_LOCK_STALE") or 30 * 60.0)
REFRESH = min(60.0, STALE / 10)
SELF_STALE = STALE / 2
SKEW = 24 * 3600.0  # when the backend gives no mtime: writer clocks may be this far off
OUTWAIT_MAX = 600.0  # seconds a session waits out brief conflicting ones (``acquire``)

log = logging.getLogger("casbackup")


@dataclass(frozen=True, slots=True)
class LockInfo:
    name: str
    exclusive: bool
    operation: str
    hostname: str
    pid: int
    username: str
    time: float
    session: str = ""
    machine: str = ""
    boot: str = ""
    pidns: int = 0
    pid_start: int = 0
    maintenance: bool = False
    intent: bytes | None = None
    mtime: float = 0.0
    legacy: bool = False

    def holder(self) -> Identity:
        return Identity(self.machine, self.boot, self.pidns, self.pid, self.pid_start,
                        self.hostname, self.username)

    def dead(self, me: Identity | None = None) -> bool:
        """Provably not running: same machine, boot and pid namespace, pid gone."""
        me = me or ident.current()
        return (not self.legacy and me.same_kernel_view(self.holder())
                and not ident.pid_alive(self.pid, self.pid_start))

    def stale(self, now: float, ref_mtime: float = 0.0, me: Identity | None = None) -> bool:
        if self.dead(me):
            return True
        if self.mtime > 0 and ref_mtime > 0:
            return ref_mtime - self.mtime > STALE
        return now - self.time > STALE + SKEW

    def conflicts_with(self, exclusive: bool, maintenance: bool) -> bool:
        return exclusive or self.exclusive or (maintenance and self.maintenance)


def _parse(name: str, m: dict[str, object], mtime: float) -> LockInfo:
    def s(k: str) -> str:
        return str(m.get(k, ""))

    def i(k: str) -> int:
        v = m.get(k, 0)
        return int(v) if isinstance(v, int | float) else 0

    intent = m.get("intent")
    t = m["time"]
    return LockInfo(
        name, bool(m["exclusive"]), str(m["operation"]), str(m["hostname"]), int(m["pid"]),  # type: ignore[call-overload]
        str(m["username"]), float(t) if isinstance(t, int | float) else 0.0,
        s("session") or name, s("machine"), s("boot"), i("pidns"), i("pid_start"),
        bool(m.get("maintenance", False)), bytes(intent) if isinstance(intent, bytes) else None,
        mtime, "session" not in m)


RELIST = 50  # listings tried while lock objects vanish between the list and the read
LOCK_MAX = 64 << 10  # bytes: a lock object is a few hundred; a bigger one is not read


def list_locks(store: Store, unreadable: list[tuple[str, float]] | None = None
               ) -> list[LockInfo]:
    """Every readable lock object, with its backend mtime. Unreadable ones that are still
    there are skipped, and named with their mtime in UNREADABLE when one is given (the
    caller deciding on liveness must not take them for no session: ``Session.listing``).

    A heartbeat writes its new object before it removes the old one, so a listing taken
    before the new object and read after the old one went would show that session as
    gone. A listing in which any object vanished before it was read is therefore taken
    again: one in which every object could be read shows every session that held a lock
    while it was taken. After ``RELIST`` listings that each lost an object,
    ``TransientError``: a caller deciding on liveness (gc, a lock conflict) must not act on
    an incomplete listing. An object larger than ``LOCK_MAX`` is unreadable without being
    read (a planted huge object must not be loaded whole); a key nested below ``locks/``
    is no lock object (sessions write ``locks/<name>`` only) and is not listed."""
    for _ in range(RELIST):
        out, vanished, bad = [], False, []
        for info in store.backend.list(LOCKS_DIR):
            name = name_of(info.key)
            if info.key != lock_key(name):
                continue  # below a directory of locks/: no session writes one there
            if info.size > LOCK_MAX:  # never read whole: damage (``unlock`` removes it)
                bad.append((name, info.mtime))
                continue
            try:
                m = serde.unpack(store.read_object(LOCKS_DIR, name, LOCK), "lock")
                out.append(_parse(name, m, info.mtime))
            except (IntegrityError, KeyError, TypeError, ValueError, OverflowError,
                    AttributeError):
                # damaged (unlock --remove-all deals with it), or removed meanwhile (the
                # store names a missing object damage): then a heartbeat's new object
                # may have come after this listing
                if _gone(store, info.key):
                    vanished = True
                else:
                    bad.append((name, info.mtime))
        if not vanished:
            if unreadable is not None:
                unreadable.extend(bad)
            return out
    raise TransientError(f"lock objects kept vanishing while listed ({RELIST} listings)")


def _gone(store: Store, key: str) -> bool:
    try:
        store.backend.stat(key)
    except NotFound:
        return True
    return False


def by_session(locks: list[LockInfo]) -> dict[str, LockInfo]:
    """The newest lock object of each session (a heartbeat may briefly leave two)."""
    out: dict[str, LockInfo] = {}
    for lk in locks:
        cur = out.get(lk.session)
        if cur is None or (lk.mtime, lk.time) > (cur.mtime, cur.time):
            out[lk.session] = lk
    return out


def live_sessions(locks: list[LockInfo], now: float, ref_mtime: float,
                  me: Identity | None = None) -> dict[str, LockInfo]:
    """The sessions of LOCKS that may still run (newest object of each, not
    ``LockInfo.stale`` against REF_MTIME, the backend's "now"): the one liveness rule of
    ``unlock``, lock conflicts and gc."""
    return {s: lk for s, lk in by_session(locks).items() if not lk.stale(now, ref_mtime, me)}


def probe_mtime(store: Store) -> float:
    """The backend's clock now: the mtime of a probe lock object we write and remove."""
    data = store.codec.seal(LOCK, serde.pack({"operation": "probe", "nonce": os.urandom(8)}))
    key = lock_key(object_name(data))
    store.backend.put(key, data)
    try:
        return store.backend.stat(key).mtime
    finally:
        with contextlib.suppress(CasError):
            store.backend.delete(key)


def remove_stale(store: Store, clock: Clock = SYSTEM, all_locks: bool = False) -> list[LockInfo]:
    """Remove stale (or, with ``all_locks``, every) lock objects. A live lock of another
    machine is stale only by heartbeat age on the backend's clock."""
    removed = []
    now = clock.time()
    bad: list[tuple[str, float]] = []
    locks = list_locks(store, bad)
    ref = 0.0 if all_locks or not (locks or bad) else probe_mtime(store)
    live = live_sessions(locks, now, ref)
    for lk in locks:
        if all_locks or lk.session not in live:
            with contextlib.suppress(NotFound):
                store.backend.delete(lock_key(lk.name))
            removed.append(lk)
    for name, mtime in bad:  # unreadable: a session until stale (``Session.listing``)
        if all_locks or (ref and mtime and mtime <= ref - STALE):
            with contextlib.suppress(NotFound):
                store.backend.delete(lock_key(name))
            removed.append(LockInfo(name, False, "unreadable lock object", "?", 0, "?",
                                    0.0, mtime=mtime))
    return removed


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
