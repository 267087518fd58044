"""Session locks (DESIGN §8): holders identified by machine, boot and pid namespace,
staleness by the backend's clock whatever the writers' clocks say, old lock objects
still read, unlock leaves other machines' live locks, release on an unwinding path, and
read-only sessions without a lock."""

from __future__ import annotations

import logging
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from casbackup import serde
from casbackup.backends.faulty import Fault, FaultyBackend
from casbackup.backends.memory import MemoryBackend
from casbackup.clock import FakeClock
from casbackup.crypto.codec import LOCK
from casbackup.errors import PermanentError, TransientError, UsageError
from casbackup.ids import object_name
from casbackup.store import identity as ident
from casbackup.store import locks
from casbackup.store.config import StoreConfig
from casbackup.store.identity import Identity
from casbackup.store.locks import LockInfo, Session, list_locks, remove_stale, session
from casbackup.store.store import Store


class Clocked:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(backend: object | None = None) -> tuple[Store, Clocked]:
    clk = Clocked()
    mem = MemoryBackend(clock=clk)
    st = Store.create(mem, StoreConfig.new("none"), None)
    if backend is not None:
        st = Store(backend(mem), st.config, st.master)  # type: ignore[operator]
    return st, clk


def _other(machine: str = "m2", boot: str = "b2", pidns: int = 7) -> Identity:
    me = ident.current()
    return Identity(machine, boot, pidns, 4_000_001, 9, me.hostname, me.username)


@pytest.mark.parametrize("who", ["clone", "other-boot", "pidns"])
def test_a_live_lock_with_our_hostname_elsewhere_is_never_dead_by_pid(who: str) -> None:
    me = ident.current()
    other = {"clone": _other(machine="m2", boot=me.boot, pidns=me.pidns),
             "other-boot": _other(machine=me.machine, boot="b2", pidns=me.pidns),
             "pidns": _other(machine=me.machine, boot=me.boot, pidns=me.pidns + 1)}[who]
    st, clk = _store()
    held = Session(st, "backup", me=other, heartbeat=False)
    held.acquire()
    (lk,) = list_locks(st)
    assert lk.hostname == me.hostname and not lk.dead(me)  # pid 4000001 does not run here
    assert remove_stale(st) == []  # unlock leaves it
    clk.now += locks.STALE + 1  # no heartbeat for longer than STALE: now it is stale
    assert [r.session for r in remove_stale(st)] == [held.id]


def test_a_dead_pid_of_our_own_kernel_view_is_dead_and_a_reused_pid_too() -> None:
    me = ident.current()
    gone = Identity(me.machine, me.boot, me.pidns, 4_000_002, 5, me.hostname, me.username)
    reused = Identity(me.machine, me.boot, me.pidns, os.getpid(), me.pid_start + 1,
                      me.hostname, me.username)
    st, _ = _store()
    for who in (gone, reused, me):
        Session(st, "backup", me=who, heartbeat=False).acquire()
    dead = {lk.pid_start for lk in list_locks(st) if lk.dead(me)}
    assert dead == {5, me.pid_start + 1}


@settings(max_examples=200, deadline=None)
@given(skew=hs.floats(-48 * 3600, 48 * 3600), age=hs.floats(0, 3 * locks.STALE),
       ours=hs.floats(-48 * 3600, 48 * 3600))
def test_staleness_is_the_backend_clocks_not_the_writers(skew: float, age: float,
                                                        ours: float) -> None:
    """Whatever the holder's and our clocks say, a lock is stale exactly when the
    backend saw no heartbeat for more than STALE."""
    st, clk = _store()
    theirs = Session(st, "backup", clock=FakeClock(clk.now + skew), me=_other(),
                     heartbeat=False)
    theirs.acquire()
    clk.now += age
    mine = Session(st, "gc", maintenance=True, clock=FakeClock(clk.now + ours),
                   heartbeat=False)
    mine.acquire()
    stale = [lk for lk in mine.others(live_only=False) if lk.stale(
        mine.clock.time(), mine.listing()[1], mine.me)]
    assert bool(stale) == (age > locks.STALE)
    mine.release()
    theirs.release()
    assert list_locks(st) == []


def test_an_old_format_lock_still_reads_and_is_stale_only_by_age() -> None:
    st, clk = _store()
    data = st.codec.seal(LOCK, serde.pack({
        "exclusive": True, "operation": "gc", "hostname": ident.current().hostname,
        "pid": 4_000_003, "username": "u", "time": 0.0, "nonce": os.urandom(8)}))
    st.backend.put(f"locks/{object_name(data)}", data)
    (lk,) = list_locks(st)
    assert lk.legacy and lk.exclusive and not lk.dead()
    with pytest.raises(locks.Locked):  # its old exclusive flag still excludes
        Session(st, "backup", heartbeat=False).acquire()
    clk.now += locks.STALE + 1
    Session(st, "backup", heartbeat=False).acquire()


def test_release_on_keyboard_interrupt_and_twice() -> None:
    st, _ = _store()
    with pytest.raises(KeyboardInterrupt), session(st, "backup") as held:
        assert held is not None and list_locks(st)
        raise KeyboardInterrupt
    assert list_locks(st) == []
    held.release()  # idempotent: nothing left, nothing raised


def test_a_gap_between_our_lock_objects_is_measured() -> None:
    st, clk = _store()
    held = Session(st, "backup", heartbeat=False)
    held.acquire()
    clk.now += locks.REFRESH
    held.beat()
    assert held.stale_gaps == 0
    clk.now += locks.SELF_STALE + 1
    held.set_intent(b"\x01" * 32)
    assert held.stale_gaps == 1 and list_locks(st)[0].intent == b"\x01" * 32


def test_read_only_sessions_without_a_lock(caplog: pytest.LogCaptureFixture) -> None:
    def read_only(inner: MemoryBackend) -> FaultyBackend:
        return FaultyBackend(inner, [Fault(ops=frozenset({"put"}), key_prefix="locks/",
                                           times=None, error=PermanentError)])

    st, _ = _store(read_only)
    with caplog.at_level(logging.WARNING), session(st, "restore", read_only=True) as held:
        assert held is None
    assert "continuing without one" in caplog.text
    with pytest.raises(PermanentError), session(st, "backup"):
        pass  # a writer never runs without its lock
    with session(st, "verify", no_lock=True, read_only=True) as held:
        assert held is None
    with pytest.raises(UsageError), session(st, "backup", no_lock=True):
        pass


def test_the_heartbeat_keeps_a_lock_object_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "REFRESH", 0.01)
    st, _ = _store()
    with session(st, "backup") as held:
        assert held is not None
        seen = set()
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:
            now = list_locks(st)
            assert len({lk.session for lk in now}) == 1
            seen.update(lk.name for lk in now)
        assert len(seen) >= 3
    assert list_locks(st) == []


class _BeatOnRead:
    """A backend on which, for the first BEATS reads of a lock object, the session's
    heartbeat runs between the listing and the read: the reader meets the old object
    gone and the new one not in its listing (the interleaving a loaded machine makes)."""

    def __init__(self, inner: MemoryBackend, beats: int) -> None:
        self.inner, self.beats = inner, beats
        self.held: Session | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def get(self, key: str, **kw: object) -> bytes:
        if key.startswith("locks/") and self.held is not None and self.beats > 0:
            self.beats -= 1
            self.held.beat()
        return self.inner.get(key, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("beats", [1, 3, locks.RELIST - 1])
def test_a_heartbeat_between_listing_and_reading_never_hides_the_session(beats: int) -> None:
    wrap: list[_BeatOnRead] = []
    st, _ = _store(lambda mem: wrap.append(_BeatOnRead(mem, beats)) or wrap[0])
    held = Session(st, "backup", heartbeat=False)
    held.acquire()
    wrap[0].held = held
    now = list_locks(st)  # each listing but the last loses the object it names
    assert [lk.session for lk in now] == [held.id] and wrap[0].beats == 0
    held.release()


def test_a_listing_that_keeps_losing_objects_is_an_error_not_an_empty_answer() -> None:
    wrap: list[_BeatOnRead] = []
    st, _ = _store(lambda mem: wrap.append(_BeatOnRead(mem, locks.RELIST)) or wrap[0])
    held = Session(st, "backup", heartbeat=False)
    held.acquire()
    wrap[0].held = held
    with pytest.raises(TransientError):
        list_locks(st)
    held.release()


def test_lockinfo_conflicts() -> None:
    base = LockInfo("n", False, "backup", "h", 1, "u", 0.0)
    gc = LockInfo("n", False, "gc", "h", 1, "u", 0.0, maintenance=True)
    repair = LockInfo("n", True, "repair", "h", 1, "u", 0.0, maintenance=True)
    assert not base.conflicts_with(False, True) and not gc.conflicts_with(False, False)
    assert gc.conflicts_with(False, True) and repair.conflicts_with(False, False)


@pytest.mark.parametrize("damage", ["not sealed", "sealed, not a lock"])
def test_an_unreadable_lock_object_is_a_session_until_it_is_stale(damage: str) -> None:
    """A lock object that lists but cannot be read may be a live session's: a session
    that would decide on liveness (gc, a lock conflict) refuses, with exit 11 and the
    way out, and leaves no lock of its own; once the object is older than the stale age
    (a live session replaces its object every REFRESH) it is no session. Listing alone
    (status, unlock) still skips it."""
    st, clk = _store()
    data = os.urandom(200) if damage == "not sealed" else st.codec.seal(LOCK, b"\xc1")
    st.backend.put(f"locks/{object_name(data)}", data)
    for kind in ({"maintenance": True}, {"exclusive": True}, {}):
        with pytest.raises(locks.Locked, match="cannot be read.*unlock --remove-all"):
            Session(st, "gc", heartbeat=False, **kind).acquire()  # type: ignore[arg-type]
        assert list_locks(st) == []  # ours was removed; the damaged one is skipped
        assert len(list(st.backend.list("locks"))) == 1
    assert remove_stale(st) == []  # `unlock` leaves a fresh one: it may be a live session's
    clk.now += locks.STALE + 1
    s = Session(st, "gc", maintenance=True, heartbeat=False)
    s.acquire()
    s.release()
    (gone,) = remove_stale(st)  # a stale one `unlock` removes, and says so
    assert gone.operation == "unreadable lock object"
    assert list(st.backend.list("locks")) == []


def test_unlock_remove_all_removes_an_unreadable_lock_object() -> None:
    """The way out the refusal names: ``unlock --remove-all`` removes it at once."""
    st, _ = _store()
    data = os.urandom(200)
    st.backend.put(f"locks/{object_name(data)}", data)
    with pytest.raises(locks.Locked):
        Session(st, "gc", maintenance=True, heartbeat=False).acquire()
    (gone,) = remove_stale(st, all_locks=True)
    assert gone.name == object_name(data)
    s = Session(st, "gc", maintenance=True, heartbeat=False)
    s.acquire()
    s.release()


class _BeatAfterOwnRead:
    """A backend on which the session's heartbeat runs right after its own lock object
    was read in a listing (the read succeeds, the object is then replaced): the listing
    is complete, but it names our previous object, not the one the session now holds."""

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner
        self.held: Session | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def get(self, key: str, **kw: object) -> bytes:
        data = self.inner.get(key, **kw)  # type: ignore[arg-type]
        held, self.held = self.held, None
        if held is not None and key == f"locks/{held.name}":
            held.beat()
        else:
            self.held = held
        return data  # type: ignore[no-any-return]


@pytest.mark.parametrize("other", ["stale", "live"])
def test_a_heartbeat_during_our_listing_keeps_the_backends_clock(other: str) -> None:
    """gc's judgement of other sessions uses our own lock object's mtime as the backend's
    "now". A heartbeat (every REFRESH, 0.3 s under the tests' STALE = 3 s) that replaces
    our object while a listing is read left that listing without the object we now hold:
    the reference was lost and every session looked live by the 24 h skew rule, so gc
    condemned nothing beside a stale backup (the flake of
    test_gc_beside::..._skewed_clock[s3] on a loaded machine). Any object of our session
    in the listing is the backend's recent "now"; a live session stays live."""
    wrap: list[_BeatAfterOwnRead] = []
    st, clk = _store(lambda mem: wrap.append(_BeatAfterOwnRead(mem)) or wrap[0])
    theirs = Session(st, "backup", me=_other(), heartbeat=False)
    theirs.acquire()
    clk.now += locks.STALE + 1 if other == "stale" else locks.STALE - 1
    mine = Session(st, "gc", maintenance=True, heartbeat=False)
    mine.acquire()
    wrap[0].held = mine
    before = mine.name
    locks_now, ref = mine.listing()
    assert mine.name != before and wrap[0].held is None  # the heartbeat did run
    assert before in {lk.name for lk in locks_now} and ref == clk.now
    live = [lk.session for lk in mine.others()]
    assert live == ([] if other == "stale" else [theirs.id])
    mine.release()
    theirs.release()


@pytest.mark.parametrize("pid", [2**64 - 1, 2**31, 0, -1, -4_000_004])
def test_a_crafted_pid_of_our_kernel_view_is_never_dead_and_never_an_error(pid: int) -> None:
    """A lock object sealed with the key (a compromised client) naming our machine, boot
    and pid namespace with a pid no process can have: judging it neither raises (2**64-1
    overflowed os.kill: an internal error in every locking command) nor calls it dead
    (0 and negative numbers name process groups to os.kill): only its age makes it stale."""
    me = ident.current()
    st, clk = _store()
    data = st.codec.seal(LOCK, serde.pack({
        "session": "s" * 32, "exclusive": False, "maintenance": False, "operation": "backup",
        "hostname": me.hostname, "pid": pid, "pid_start": 0, "machine": me.machine,
        "boot": me.boot, "pidns": me.pidns, "username": me.username, "time": clk.now,
        "intent": None, "nonce": os.urandom(8)}))
    st.backend.put(f"locks/{object_name(data)}", data)
    (lk,) = list_locks(st)
    assert not lk.dead(me)
    assert remove_stale(st) == []
    held = Session(st, "gc", maintenance=True, heartbeat=False)
    held.acquire()
    assert [o.session for o in held.others()] == ["s" * 32]
    held.release()
