"""Lock objects (``locks/<id>``, DESIGN §8) as read: parsing, listing, and the one
liveness rule that ``unlock``, lock conflicts and gc share. Holding a lock -- a session,
its heartbeat -- is ``locks.py``'s, which re-exports what is here.

Invariants:
- A lock is *dead* because its pid is not running (or runs with another start time) only
  when its machine id, boot id and pid namespace all equal ours. Otherwise it is *stale*
  only by heartbeat age judged by the backend's clock: the lock object's mtime against the
  mtime of a lock object we just wrote, older by more than ``STALE``. Without mtimes the
  writer's time is compared with ours with a further ``SKEW`` margin. Lock objects of the
  old format (no session id) are never dead by pid.
- A listing in which a lock object vanished between the list and the read is taken again
  (a heartbeat writes its new object before removing the old one): a listing returned
  shows every session that held a lock while it was taken, or ``TransientError``.
- An object larger than ``LOCK_MAX`` is never read whole, and a key nested below
  ``locks/`` is no lock object; an unreadable lock object is named to the caller, never
  taken for no session.
- A lock object is sealed like any other (kind ``lock``), named by the BLAKE3 of its bytes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .. import serde
from ..clock import SYSTEM, Clock
from ..errors import CasError, IntegrityError, NotFound, TransientError
from ..ids import LOCK, object_name
from . import identity as ident
from .identity import Identity
from .layout import LOCKS_DIR, lock_key, name_of
from .store import Store

STALE = float(os.environ.get("CASBACKUP_TEST_LOCK_STALE") or 30 * 60.0)
SKEW = 24 * 3600.0  # when the backend gives no mtime: writer clocks may be this far off


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
