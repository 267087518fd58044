"""A seeded scheduler that interleaves real operations on one store, one backend call at
a time (issue #10 point 4; the protocol is DESIGN §8).

Each *actor* (backups on hosts that share our hostname or not, in other pid namespaces,
with skewed clocks; forget; gc; sync from a paired store) runs in its own thread on its
own ``Store`` whose backend is a ``Gate``: every call of that store (from any of the
actor's threads: file savers, uploaders) blocks until the scheduler grants it. Between
two calls the scheduler may

- *pause* an actor: it gets no call for a while, the backend's clock jumps past
  ``STALE`` and every other actor's sessions beat (their heartbeat threads would);
- *crash* an actor: that call and every later one raise ``Crash`` (a BaseException:
  nothing in casbackup catches it), so the actor stops where it is and leaves its lock
  objects, packs and records as kill -9 would.

After every granted call ``Checker.check`` asserts the invariant: every blob referenced
by every committed snapshot is held by a pack on the backend. At the end every snapshot
a completed backup committed (and not forgotten) must read back through a fresh Store to
exactly the source it read.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casbackup.backends.base import ObjectInfo, Properties
from casbackup.backends.local import LocalBackend
from casbackup.backends.memory import MemoryBackend
from casbackup.clock import Clock
from casbackup.errors import CasError, IntegrityError
from casbackup.model.snapshot import Snapshot
from casbackup.model.tree import Tree
from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.forget import forget_ids
from casbackup.ops.gc import GcOptions, gc
from casbackup.ops.sync import Syncer
from casbackup.store import identity as ident
from casbackup.store import locks
from casbackup.store.commit import WriteSession
from casbackup.store.config import StoreConfig
from casbackup.store.identity import Identity
from casbackup.store.store import Store

T0 = 1_800_000_000.0


class Crash(BaseException):
    """An actor killed at a backend call (kill -9)."""


class ClockedLocal(LocalBackend):
    """A local store whose file mtimes follow the scheduler's clock (the "server")."""

    def __init__(self, root: Path, clock: Callable[[], float]) -> None:
        super().__init__(root)
        self.clock = clock

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        super().put(key, data, overwrite=overwrite)
        t = self.clock()
        os.utime(self._path(key), (t, t))


class World:
    """The scheduler: one backend (with a clock it moves), actors waiting at gates."""

    def __init__(self, seed: int, root: Path | None = None) -> None:
        self.rnd = random.Random(seed)
        self.now = T0
        self.mem: MemoryBackend | ClockedLocal = (
            MemoryBackend(clock=lambda: self.now) if root is None
            else ClockedLocal(root, lambda: self.now))
        self.cv = threading.Condition()
        self.waiting: dict[str, list[object]] = {}
        self.granted: object | None = None
        self.inflight = False
        self.crashed: set[str] = set()
        self.sched = threading.current_thread()
        self.sessions: dict[str, list[locks.Session]] = {}
        self.steps = 0
        self.pauses = 0
        self.burst = self.rnd.choice([0.0, 0.5, 0.9])
        self.finished: set[str] = set()

    def finish(self, actor: str) -> None:
        with self.cv:
            self.finished.add(actor)
            self.cv.notify_all()

    # ----- the actor side ------------------------------------------------------------

    def turn(self, actor: str) -> None:
        with self.cv:
            if actor in self.crashed:
                raise Crash(actor)
            ticket = object()
            self.waiting.setdefault(actor, []).append(ticket)
            self.cv.notify_all()
            while self.granted is not ticket:
                if actor in self.crashed:
                    self.waiting[actor].remove(ticket)
                    self.cv.notify_all()
                    raise Crash(actor)
                self.cv.wait()
            self.granted = None

    def done(self) -> None:
        with self.cv:
            self.inflight = False
            self.cv.notify_all()

    # ----- the scheduler side ----------------------------------------------------------

    def beat_others(self, actor: str) -> None:
        """What the heartbeat threads of every other live actor do while ``actor`` is
        paused: refresh their lock objects (skipping a session busy writing one)."""
        for other, sessions in self.sessions.items():
            if other == actor or other in self.crashed:
                continue
            for s in sessions:
                if s.name and s._mu.acquire(blocking=False):
                    try:
                        old, s.name = s.name, s._write()
                        with contextlib.suppress(CasError):
                            self.mem.delete(f"locks/{old}")
                    finally:
                        s._mu.release()

    def run(self, threads: dict[str, threading.Thread], check: Callable[[], None],
            pause_p: float, crash_p: float) -> None:
        paused: dict[str, int] = {}
        current = ""
        for t in threads.values():
            t.start()
        while True:
            with self.cv:
                # every live actor waits at a gate (or has ended); an actor works between
                # two calls for milliseconds, so two minutes (a loaded CI machine) is a hang
                deadline = time.monotonic() + 120
                while True:
                    ready = [a for a, w in self.waiting.items() if w]
                    alive = [a for a in threads if a not in self.finished]
                    if set(alive) <= set(ready):
                        break
                    assert time.monotonic() < deadline, (
                        f"step {self.steps}: {alive} stuck outside the backend")
                    self.cv.wait(0.05)
                if not ready:
                    break
                self.steps += 1
                self.now += self.rnd.uniform(0.1, 2.0)
                runnable = [a for a in ready if paused.get(a, 0) < self.steps] or ready
                # bursts: one actor often runs many calls in a row (a whole gc between
                # two calls of a backup), else any actor may be next
                a = (current if current in runnable and self.rnd.random() < self.burst
                     else self.rnd.choice(sorted(runnable)))
                current = a
                r = self.rnd.random()
                if r < pause_p and a not in paused:
                    paused[a] = self.steps + self.rnd.randint(1, 40)
                    self.now += locks.STALE + self.rnd.uniform(1, 3 * 3600)
                    self.pauses += 1
                    self.beat_others(a)
                    continue
                if r < pause_p + crash_p:
                    self.crashed.add(a)
                    self.cv.notify_all()
                    continue
                w = self.waiting[a]
                self.granted = w.pop(self.rnd.randrange(len(w)))
                self.inflight = True
                self.cv.notify_all()
                while self.inflight:
                    self.cv.wait()
            check()
        for t in threads.values():
            t.join()


class Gate:
    """A backend whose every call waits for the scheduler's grant to its actor."""

    def __init__(self, world: World, actor: str) -> None:
        self.world, self.actor, self.inner = world, actor, world.mem

    def _call(self, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        if threading.current_thread() is self.world.sched:
            return fn(*a, **kw)
        self.world.turn(self.actor)
        try:
            return fn(*a, **kw)
        finally:
            self.world.done()

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        self._call(self.inner.put, key, data, overwrite=overwrite)

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        out: bytes = self._call(self.inner.get, key, offset=offset, length=length)
        return out

    def stat(self, key: str) -> ObjectInfo:
        out: ObjectInfo = self._call(self.inner.stat, key)
        return out

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(self._call(lambda: list(self.inner.list(prefix))))

    def delete(self, key: str) -> None:
        self._call(self.inner.delete, key)

    def close(self) -> None:
        pass

    def properties(self) -> Properties:
        return Properties(connections=2, atomic_exclusive_create=True, is_local=False)


class ActorClock(Clock):
    def __init__(self, world: World, skew: float) -> None:
        self.world, self.skew = world, skew

    def time(self) -> float:
        return self.world.now + self.skew

    def monotonic(self) -> float:
        return self.world.now

    def sleep(self, seconds: float) -> None:
        pass


# ----- the invariant -------------------------------------------------------------------


class Checker:
    """Reads the backend directly (no index, no locks) and remembers what it parsed:
    packs and snapshots are immutable, named by their bytes."""

    def __init__(self, world: World, store: Store) -> None:
        self.world, self.store = world, store
        self.pack_blobs: dict[str, frozenset[bytes]] = {}
        self.where: dict[bytes, tuple[str, Any]] = {}
        self.refs: dict[str, frozenset[bytes]] = {}
        self._held_for: frozenset[str] = frozenset()
        self._held: set[bytes] = set()
        self._files: dict[str, bytes] = {}

    def _objects(self) -> dict[str, bytes]:
        mem = self.world.mem
        if isinstance(mem, MemoryBackend):
            with mem._space.lock:
                return {k: v for k, (v, _) in mem._space.objects.items()}
        out = {}
        for prefix in ("packs/", "snapshots/"):  # immutable: read each once
            for info in mem.list(prefix):
                if info.key not in self._files:
                    self._files[info.key] = mem.get(info.key)
                out[info.key] = self._files[info.key]
        return out

    def check(self) -> None:
        objs = self._objects()
        packs = frozenset(k.rsplit("/", 1)[1] for k in objs if k.startswith("packs/"))
        for name in packs - self.pack_blobs.keys():
            entries = self.store.pack_entries(name, objs[f"packs/{name[:2]}/{name}"])
            self.pack_blobs[name] = frozenset(e.id for e in entries)
            for e in entries:
                self.where.setdefault(e.id, (name, e))
        if packs != self._held_for:
            self._held = set().union(*(self.pack_blobs[p] for p in packs))
            self._held_for = packs
        for key in objs:
            if not key.startswith("snapshots/"):
                continue
            sid = key.split("/", 1)[1]
            if sid not in self.refs:
                self.refs[sid] = self._walk(Snapshot.decode(
                    self.store.codec.unseal("snapshot", objs[key]), sid).tree, objs)
            lost = self.refs[sid] - self._held
            assert not lost, (f"step {self.world.steps}: snapshot {sid[:8]} references "
                              f"{len(lost)} blob(s) no pack on the backend holds")

    def _walk(self, root: bytes, objs: dict[str, bytes]) -> frozenset[bytes]:
        out: set[bytes] = set()
        stack = [root]
        while stack:
            tid = stack.pop()
            if tid in out:
                continue
            out.add(tid)
            pack, e = self.where.get(tid, ("", None))
            data = objs.get(f"packs/{pack[:2]}/{pack}") if e is not None else None
            if data is None:
                continue  # lost already: check() reports it
            tree = Tree.decode(self.store.unseal_entry(e, data[e.offset:e.offset + e.length]))
            for n in tree.nodes:
                if n.subtree is not None:
                    stack.append(n.subtree)
                out.update(n.content or ())
        return frozenset(out)


def read_back(store: Store, sid: str, src: Path) -> dict[str, bytes]:
    """The files under ``src`` as the snapshot holds them, read through ``store``."""
    snap = store.load_snapshot(sid)
    tree = store.load_tree(snap.tree)
    for part in [p for p in os.fsencode(src).split(b"/") if p]:
        node = tree.find(part)
        assert node is not None and node.subtree is not None
        tree = store.load_tree(node.subtree)
    out: dict[str, bytes] = {}
    stack = [("", tree)]
    while stack:
        prefix, t = stack.pop()
        for n in t.nodes:
            path = f"{prefix}/{os.fsdecode(n.name)}"
            if n.subtree is not None:
                stack.append((path, store.load_tree(n.subtree)))
            elif n.content is not None:
                out[path] = b"".join(store.get_blob(b) for b in n.content)
    return out


def source_files(src: Path) -> dict[str, bytes]:
    return {"/" + str(p.relative_to(src)): p.read_bytes()
            for p in src.rglob("*") if p.is_file()}


# ----- one schedule ----------------------------------------------------------------------


@dataclass
class Outcome:
    committed: dict[str, Path] = field(default_factory=dict)  # snapshot -> source read
    forgotten: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)  # clean failures (CasError)
    steps: int = 0
    copied: int = 0  # blobs writers copied out of condemned packs
    pauses: int = 0
    crashes: int = 0


def make_sources(root: Path) -> list[Path]:
    rnd = random.Random(1)
    blobs = [rnd.randbytes(rnd.randint(2000, 20000)) for _ in range(8)]
    out = []
    for i in range(3):
        src = root / f"src{i}"
        (src / "sub").mkdir(parents=True)
        for j in range(4):
            (src / ("sub" if j % 2 else "") / f"f{j}").write_bytes(blobs[(i * 2 + j) % 8])
        out.append(src)
    return out


def identity(kind: str, n: int) -> Identity:
    me = ident.current()
    if kind == "local":
        return me
    # same hostname, another machine or pid namespace: a pid that does not run here
    return Identity(f"m{n}" if kind == "clone" else me.machine,
                    me.boot if kind == "pidns" else f"b{n}",
                    me.pidns + 1 + n, 4_000_000 + n, 7, socket.gethostname(), "u")


def _open(world: World, actor: str, master: Any, config: StoreConfig) -> Store:
    return Store(Gate(world, actor), config, master)


@dataclass
class _Start:
    """The history every schedule starts from (built once per source set)."""

    objects: dict[str, bytes]
    side: Store
    master: Any
    config: StoreConfig
    committed: dict[str, Path]
    forgotten: set[str]
    side_snaps: dict[str, Path]


_STARTS: dict[tuple[Path, ...], _Start] = {}


def _start(sources: list[Path]) -> _Start:
    key = tuple(sources)
    if key not in _STARTS:
        mem = MemoryBackend()
        base = Store.create(mem, StoreConfig.new("none", pack_size=16 << 10), None)
        opts = BackupOptions(archive=ArchiveOptions(workers=1, prefetch=False))
        committed = {backup(base, [str(src)], opts).snapshot.id: src for src in sources[:2]}
        first = next(iter(committed))
        forget_ids(base, [first])  # history: something to dedup against, forget and gc
        side = Store.create(MemoryBackend(), StoreConfig.new("none", pack_size=16 << 10),
                            None, master=base.master)  # a paired store to sync from
        side_snaps = {backup(side, [str(s)], opts).snapshot.id: s for s in sources[1:]}
        objects = {k: v for k, (v, _) in mem._space.objects.items()}
        _STARTS[key] = _Start(objects, side, base.master, base.config, committed,
                              {first}, side_snaps)
    return _STARTS[key]


def schedule(seed: int, sources: list[Path], pause_p: float = 0.02,
             crash_p: float = 0.01, local: Path | None = None,
             who: str | None = None) -> Outcome:
    """One schedule on the memory backend, or on a local store under ``local``; every
    actor on a host of kind ``who`` (local, clone, pidns) instead of a random one."""
    world = World(seed, local)
    rnd = world.rnd
    start = _start(sources)
    for k, v in start.objects.items():
        world.mem.put(k, v, overwrite=True)
    master, config, side = start.master, start.config, start.side
    base = Store(world.mem, config, master)
    out = Outcome(dict(start.committed), set(start.forgotten))
    opts = BackupOptions(archive=ArchiveOptions(workers=1, prefetch=False))
    side_snaps = start.side_snaps
    threads: dict[str, threading.Thread] = {}
    kinds = ["backup", "backup", "backup", "gc", "gc", "forget", "sync"]
    plan = ["gc", "backup"] + rnd.sample(kinds, rnd.randint(1, 3))
    mu = threading.Lock()

    real_check = WriteSession._check

    def check(self: WriteSession, snap: Snapshot) -> None:
        try:
            real_check(self, snap)
        finally:
            with mu:
                out.copied += self.copied

    def actor(name: str, job: str, n: int, arnd: random.Random) -> None:
        st = _open(world, name, master, config)
        clock = ActorClock(world, arnd.choice([0.0, 0.0, -2 * 3600.0, 3 * 3600.0]))
        ident.assume(identity(who or arnd.choice(["local", "clone", "pidns"]), n))
        try:
            if job == "backup":
                src = arnd.choice(sources)
                snap = backup(st, [str(src)], opts, clock=clock).snapshot
                with mu:
                    out.committed[snap.id] = src
            elif job == "gc":
                gc(st, GcOptions(max_unused=arnd.choice([0.0, 0.05, 1.0]), max_wait=0),
                   clock=clock)
            elif job == "forget":
                with mu:
                    alive = sorted(set(out.committed) - out.forgotten)
                if alive:
                    victim = arnd.choice(alive)
                    with mu:
                        out.forgotten.add(victim)
                    forget_ids(st, [victim])
            else:
                res = Syncer(side, st).run()
                with mu:
                    for c in res.copied:
                        out.committed[c.dst_id] = side_snaps[c.src_id]
        except CasError as e:
            with mu:
                out.failures.append(f"{name}: {e}")
        except Crash:
            pass
        finally:
            ident.assume(None)
            world.finish(name)

    for n, job in enumerate(plan):
        name = f"{job}{n}"
        world.sessions[name] = []
        threads[name] = threading.Thread(target=actor, daemon=True,
                                         args=(name, job, n, random.Random(rnd.random())))
    checker = Checker(world, base)
    real_acquire = locks.Session.acquire

    def acquire(self: locks.Session, retry: float = 0.0, *args: Any) -> None:
        gate = self.store.backend
        if isinstance(gate, Gate):
            world.sessions[gate.actor].append(self)
        real_acquire(self, retry, *args)

    locks.Session.acquire = acquire  # type: ignore[method-assign]
    WriteSession._check = check  # type: ignore[method-assign]
    try:
        world.run(threads, checker.check, pause_p, crash_p)
        checker.check()
        out.steps, out.pauses, out.crashes = world.steps, world.pauses, len(world.crashed)
        _read_back_all(Store(world.mem, config, master), out)
        # then gc on its own, every actor's lock gone: phase 2 of what the schedule left
        final = Store(world.mem, config, master)
        locks.remove_stale(final, all_locks=True)
        try:
            gc(final, GcOptions(max_wait=0))
        except IntegrityError as e:
            raise AssertionError(f"the final gc finds damage: {e}") from None
        checker.check()
        damage = [f for f in out.failures
                  if any(w in f for w in ("damaged", "index", "missing but"))]
        assert not damage, damage
        _read_back_all(Store(world.mem, config, master), out)
    except AssertionError as e:
        raise AssertionError(f"seed {seed}, actors {list(threads)}, crashed "
                             f"{sorted(world.crashed)}, failures {out.failures}: {e}") from None
    finally:
        locks.Session.acquire = real_acquire  # type: ignore[method-assign]
        WriteSession._check = real_check  # type: ignore[method-assign]
    return out


def _read_back_all(store: Store, out: Outcome) -> None:
    present = set(store.snapshot_ids())
    for sid, src in out.committed.items():
        if sid in present:
            try:
                got = read_back(store, sid, src)
            except IntegrityError as e:
                raise AssertionError(f"snapshot {sid[:8]} does not restore: {e}") from None
            assert got == source_files(src), f"snapshot {sid[:8]} restores other data"
