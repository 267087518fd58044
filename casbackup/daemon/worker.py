"""Each job attempt runs in its own child process, so the daemon can time it out and stop
it cleanly, and a crash or a leak in one run cannot take the daemon down.

Invariants:

* Children come from a ``forkserver`` (forked from a clean, single-threaded server, not
  from the multi-threaded daemon); the job modules are preloaded there, so a run starts
  in milliseconds.
* A child runs in its own process group (a signal sent to the daemon's group, by a
  terminal or ``timeout``, is the daemon's to handle), ignores SIGINT and SIGHUP and turns
  SIGTERM into ``JobStopped``, which unwinds the operation: its ``with`` blocks release
  the store lock and close the store. A backup abandoned that way leaves only
  unreferenced packs (the snapshot is the commit point). ``stop`` escalates to SIGKILL
  after ``kill_grace`` seconds (an operation may finish reading a file before it
  unwinds); after a SIGKILL the lock the child left names a dead pid on this host, so it
  is stale, and the parent removes the stale locks of the job's stores (as ``unlock``).
* ``wait`` always returns a ``JobOutcome``: the child's own, or a failure saying that the
  child timed out, was stopped, or died without reporting.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from ..clock import SYSTEM
from ..errors import CasError
from ..store.locks import remove_stale
from .config import Config
from .jobs import JobOutcome, JobStopped, open_configured, run_job

KILL_GRACE = 10.0
_ctx: Any = None


def _context() -> Any:
    global _ctx
    if _ctx is None:
        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload(["casbackup.daemon.jobs", "casbackup.daemon.worker"])
    return _ctx


def prepare() -> None:
    """Start the fork server now (before the daemon starts threads and serves requests)."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def _on_term(signum: int, frame: object) -> None:
    raise JobStopped()


def _child(config: Config, name: str, conn: Connection) -> None:
    os.setpgrp()  # a signal to the daemon's process group is the daemon's to handle
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    job = config.jobs[name]
    started = SYSTEM.time()
    try:
        out = run_job(config, name)
    except JobStopped:
        out = JobOutcome(name, job.type, job.store, "failure", started,
                         SYSTEM.time() - started, "stopped", 1, stopped=True)  # fmt: skip
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the result must get through
    with contextlib.suppress(OSError):
        conn.send(out)
    conn.close()


class JobProcess:
    """One attempt of one job in a child process."""

    def __init__(self, config: Config, name: str, kill_grace: float = KILL_GRACE) -> None:
        self.name = name
        self.config = config
        self.kill_grace = kill_grace
        self.killed = False
        self.job = config.jobs[name]
        ctx = _context()
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_child, args=(config, name, child_conn), name=f"casbackup-job-{name}"
        )
        self._child_conn = child_conn
        self.started = SYSTEM.time()
        self._stop_reason: str | None = None
        self._kill_at: float | None = None

    def start(self) -> None:
        self.started = SYSTEM.time()
        self.proc.start()
        self._child_conn.close()  # ours: so that a dead child reads as EOF

    @property
    def pid(self) -> int | None:
        pid: int | None = self.proc.pid
        return pid

    def wait(self, timeout: float | None) -> JobOutcome:
        """Block until the child reports (or times out after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out: JobOutcome | None = None
        while out is None:
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                self.stop(f"timed out after {timeout:g}s")
                deadline = None
                continue
            if self._kill_at is not None and time.monotonic() > self._kill_at:
                self.proc.kill()  # it did not unwind in time: its lock is now stale
                self.killed = True
                self._kill_at = None
            if self._conn.poll(left):
                try:
                    out = self._conn.recv()
                except (EOFError, OSError):
                    break
            elif not self.proc.is_alive() and not self._conn.poll(0):
                break
        self.proc.join(self.kill_grace)
        if self.proc.is_alive():
            self.proc.kill()
            self.killed = True
            self.proc.join()
        self._conn.close()
        if self.killed:
            self._remove_stale_locks()
        if out is None:
            code = self.proc.exitcode
            reason = self._stop_reason or f"the job's process died (exit status {code})"
            return JobOutcome(self.name, self.job.type, self.job.store, "failure",
                              self.started, SYSTEM.time() - self.started, reason, 1)  # fmt: skip
        if self._stop_reason and not out.ok:
            out.error = f"{self._stop_reason} ({out.error})"
        return out

    def _remove_stale_locks(self) -> None:
        for name in dict.fromkeys(s for s in (self.job.store, self.job.to) if s):
            with contextlib.suppress(CasError), open_configured(self.config.stores[name]) as st:
                remove_stale(st)

    def stop(self, reason: str = "stopped by the daemon") -> None:
        """Ask the child to stop (SIGTERM); ``wait`` kills it after a grace period."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._kill_at = time.monotonic() + self.kill_grace
        if self.proc.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.proc.terminate()
