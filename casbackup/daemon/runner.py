"""The daemon loop: run the configured jobs on their cron schedules, one per store at a
time, with retries, catch-up after downtime, metrics, health, reload and clean stop.

Invariants:

* One thread (the one calling ``run``) owns the schedule, the queue, the state and the
  store table; job processes report back through a queue and wake it. Signal handlers
  only set flags and write a byte to a pipe (async-signal-safe: a handler never takes a
  lock the interrupted thread may hold). The HTTP and watch threads read the state under
  ``_lock``.
* **One job per store**: a job needs every store it touches (a sync needs both); it
  starts only when none of them is busy, in the order jobs became due. A job is never
  queued twice: while it waits or runs, its later slots collapse into one (``catch_up``)
  or are skipped, as ``schedule.Schedule.mark_run`` decides.
* A failed attempt is retried ``retries`` times, ``retry_delay`` seconds apart, without
  holding its stores while it waits. Only the final outcome changes the job's
  ``last_result``; every attempt counts in the metrics.
* ``last_run`` (the state file) is the start of the last finished run; runs stopped by a
  shutdown do not update it, so with ``catch_up`` a restart runs them again.
* SIGTERM/SIGINT: start nothing new, let running jobs finish for ``stop_timeout``
  seconds, then stop them cleanly (their processes release their locks), save the state
  and return 0. A second signal stops them at once. SIGHUP reloads the configuration;
  an invalid one is logged and the old one kept.
* Events go to ``emit(event, **fields)`` (the CLI prints them); this module prints
  nothing.
"""

from __future__ import annotations

import contextlib
import copy
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import tzinfo
from pathlib import Path
from typing import Any

from ..clock import SYSTEM, Clock
from ..errors import CasError, UsageError
from . import health as healthmod
from . import sdnotify
from .config import Config, JobConfig, NotifyConfig, load_config
from .jobs import JobOutcome
from .metrics import Metrics, MetricsServer
from .notify import Notifier
from .queue import Run, RunQueue, Waker
from .schedule import Schedule
from .state import RunRecord, State, exclusive, load_state, save_state, state_path
from .statuspage import StatusPage
from .watches import WatchSet
from .worker import JobProcess, prepare

Emit = Callable[..., None]
MAX_SLEEP = 1.0  # wake at least this often (a wall-clock jump must not oversleep a slot)


class Daemon:
    def __init__(self, config_path: str | os.PathLike[str], emit: Emit, *,
                 clock: Clock = SYSTEM, tz: tzinfo | None = None,
                 stop_timeout: float = 30.0,
                 process: Callable[[Config, str], JobProcess] = JobProcess) -> None:  # fmt: skip
        self.config_path = Path(config_path)
        self.config: Config = load_config(self.config_path)  # invalid: UsageError, exit 2
        self.emit = emit
        self.clock = clock
        self.tz = tz
        self.stop_timeout = stop_timeout
        self.process = process  # tests run jobs without child processes
        self.state_file = state_path(self.config_path, self.config.state)
        self.state = self._load_state()
        self.schedule: Schedule[JobConfig] = Schedule(
            self.config.jobs.values(), clock, tz, self.state.last_runs()
        )
        self.started = clock.now()
        self.since = {name: self.started for name in self.config.jobs}  # health baselines
        self.metrics = Metrics()
        self.server: MetricsServer | None = None
        self.watches = WatchSet(self.metrics, emit)
        self.queue = RunQueue()  # one run per job: waiting, waiting to retry, or running
        self.done: queue.Queue[tuple[str, JobOutcome]] = queue.Queue()
        self.wake = Waker()
        self._lock = threading.Lock()
        self._signals = 0
        self._stopping = False
        self.notifier = Notifier(
            lambda ref, error: self.emit("notify-error", target=ref, error=error))
        self.status_page = StatusPage()
        self._watchdog = sdnotify.watchdog_interval()
        self._last_ping = float("-inf")
        self._reload = False
        self._dirty = True

    # --- signals (set flags, wake the loop) ----------------------------------------------

    def request_stop(self) -> None:
        self._signals += 1
        self._stopping = True
        self.wake.set()

    def request_reload(self) -> None:
        self._reload = True
        self.wake.set()

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handlers = {
            signal.SIGTERM: lambda *_: self.request_stop(),
            signal.SIGINT: lambda *_: self.request_stop(),
            signal.SIGHUP: lambda *_: self.request_reload(),
        }
        old = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
        try:
            yield
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or ``request_stop``); returns the exit code (0)."""
        with self._signal_handlers(), exclusive(self.state_file):
            prepare()
            with self._lock:
                self.state.daemon_pid = os.getpid()
                self.state.daemon_started = self.started
                self.state.daemon_stopped = None
            self._start_server(at_start=True)
            self.emit("daemon-start", config=str(self.config_path), pid=os.getpid(),
                      jobs=len(self.config.jobs), watches=len(self.config.watches),
                      state=str(self.state_file))  # fmt: skip
            self._announce(self.config.jobs)
            self.watches.update(self.config)
            sdnotify.notify("READY=1", f"STATUS=running {len(self.config.jobs)} jobs",
                            f"MAINPID={os.getpid()}")  # fmt: skip
            while not self._stopping:
                self.step()
                self._ping_watchdog()
                self.wake.wait(self._sleep_time())
            sdnotify.notify("STOPPING=1")
            self._shutdown()
        self.wake.close()
        return 0

    def step(self) -> None:
        """One turn of the loop: take finished runs, queue due jobs, reload if asked (after
        queueing, so a slot due right now is not lost to the new schedule), start jobs."""
        self._collect()
        self._enqueue_due()
        if self._reload:
            self._reload = False
            self.reload()
        self._dispatch()
        watches = self.watches.status()
        if watches != self.state.watches:
            with self._lock:
                self.state.watches = watches
            self._dirty = True
        self._save()

    def page(self) -> str:
        """The status page (``GET /``): stores gathered outside the loop's lock, from a
        copy of the state taken under it."""
        with self._lock:
            state, config = copy.deepcopy(self.state), self.config
        return self.status_page.html(config, state)

    def _notify_config(self, job: JobConfig) -> NotifyConfig | None:
        return job.notify if job.notify is not None else self.config.notify

    def _ping_watchdog(self) -> None:
        """``WATCHDOG=1`` at half of systemd's ``WatchdogSec``: only a loop that turns
        pings, so a hung loop gets the daemon restarted."""
        if self._watchdog is None:
            return
        now = self.clock.monotonic()
        if now - self._last_ping >= self._watchdog:
            sdnotify.notify("WATCHDOG=1")
            self._last_ping = now

    def _sleep_time(self) -> float:
        t = MAX_SLEEP if self._watchdog is None else min(MAX_SLEEP, self._watchdog)
        wakeup = self.schedule.next_wakeup()
        if wakeup is not None:
            t = min(t, (wakeup - self.schedule.now()).total_seconds())
        retry = self.queue.next_retry()
        if retry is not None:
            t = min(t, retry - self.clock.monotonic())
        return max(0.01, t)

    def _enqueue_due(self) -> None:
        for due in self.schedule.due():
            if due.job.name not in self.queue:
                self.queue.add(Run(due.job.name, due.scheduled, due.catch_up))

    def _dispatch(self) -> None:
        if self._stopping:
            return

        def stores_of(name: str) -> tuple[str, ...] | None:
            job = self.config.jobs.get(name)  # None: removed by a reload while it waited
            if job is None:
                return None
            return tuple(dict.fromkeys(s for s in (job.store, job.to) if s))

        for run in self.queue.ready(self.clock.monotonic(), stores_of):
            self._start(run, self.config.jobs[run.name])

    def _start(self, run: Run, job: JobConfig) -> None:
        run.first_started = run.first_started or self.clock.now()
        proc = run.process = self.process(self.config, run.name)
        try:
            proc.start()
        except OSError as e:  # cannot fork: a failed attempt, retried like any other
            self.done.put((run.name, JobOutcome(run.name, job.type, job.store, "failure",
                                                self.clock.time(), 0.0,
                                                f"cannot start the job: {e}", 1)))  # fmt: skip
            self.wake.set()
            return
        self.metrics.job_running(run.name, job.store, True)
        self.emit("job-start", job=run.name, store=job.store, type=job.type,
                  attempt=run.attempt + 1, scheduled=run.scheduled.isoformat(),
                  catch_up=run.catch_up, pid=proc.pid)  # fmt: skip
        if run.attempt == 0:
            self.notifier.start(self._notify_config(job), run.name, job.store, job.type)
        threading.Thread(
            target=self._monitor, args=(run.name, proc, job.timeout),
            name=f"job-{run.name}", daemon=True,
        ).start()  # fmt: skip

    def _monitor(self, name: str, proc: JobProcess, timeout: float | None) -> None:
        self.done.put((name, proc.wait(timeout)))
        self.wake.set()

    def _collect(self) -> None:
        while True:
            try:
                name, out = self.done.get_nowait()
            except queue.Empty:
                return
            self._finish(name, out)

    def _finish(self, name: str, out: JobOutcome) -> None:
        self.status_page.invalidate()
        run = self.queue.release(name)
        finished = self.clock.now()
        job = self.config.jobs.get(name)
        self.metrics.job_running(name, out.store, False)
        for store_name, st in out.stores.items():
            self.metrics.store(store_name, st)
        fields: dict[str, Any] = {"job": name, "store": out.store, "type": out.kind,
                                  "attempt": run.attempt + 1, "duration": round(out.duration, 3)}
        if run.stopped or (out.stopped and self._stopping):
            self.emit("job-stopped", **fields, error=out.error)
            self.queue.drop(name)
            return
        if job is not None:  # a job removed by a reload keeps no series
            self.metrics.job(out, finished.timestamp())
        for h in out.hooks:
            self.emit("hook-failure" if h["error"] else "hook", job=name, store=out.store,
                      phase=h["phase"], command=h["command"], exit_code=h["exit_code"],
                      duration=h["duration"], error=h["error"],
                      output=h["output"].rstrip("\n") or None)  # fmt: skip
        for w in out.warnings:
            self.emit("job-warning", job=name, store=out.store, message=w)
        with self._lock:
            js = self.state.job(name) if job is not None else None
            if js is not None:
                js.runs += 1
                js.failures += 0 if out.ok else 1
        if not out.ok and job is not None and run.attempt < job.retries and not self._stopping:
            self.queue.retry(name, self.clock.monotonic() + job.retry_delay)
            self.emit("job-retry", **fields, error=out.error, exit_code=out.exit_code,
                      retry_in=job.retry_delay)  # fmt: skip
            return
        self.queue.drop(name)
        if job is not None:
            # the state first, then the event: whoever acts on "job-failure" (or
            # success) and then asks /healthz or the status page sees this run in it
            started = run.first_started or finished
            with self._lock:
                js = self.state.job(name)
                js.last_run, js.last_result = started, out.result
                js.last_duration, js.last_error = out.duration, out.error
                self.state.record(RunRecord(name, started.timestamp(), out.duration,
                                            out.result,
                                            (out.error or "").split("\n")[0][:300] or None))
                if out.ok:
                    js.last_success = finished
                if name in self.schedule.jobs:
                    self.schedule.mark_run(name, started, finished)
                    js.next_run = nxt = self.schedule.pending(name)
                    self.metrics.job_next_run(name, out.store, nxt.timestamp())
            self._dirty = True
        if out.ok:
            self.emit(f"job-{out.result}", **fields, bytes_read=out.bytes_read,
                      bytes_added=out.bytes_added, files=out.files, snapshot=out.snapshot,
                      **({"error": out.error} if out.error else {}))  # fmt: skip
        else:
            self.emit("job-failure", **fields, error=out.error, exit_code=out.exit_code)
        if job is not None:
            self.notifier.finish(self._notify_config(job), out)

    def _announce(self, names: Any) -> None:
        with self._lock:
            for name in names:
                job = self.config.jobs[name]
                js = self.state.job(name)
                js.next_run = nxt = self.schedule.pending(name)
                self.metrics.declare_job(name, job.store)
                self.metrics.job_next_run(name, job.store, nxt.timestamp())
                if js.last_success is not None:
                    self.metrics.seed_success(name, job.store, js.last_success.timestamp())
                self.emit("job-scheduled", job=name, store=job.store, type=job.type,
                          cron=job.cron, next_run=js.next_run.isoformat())  # fmt: skip
        self._dirty = True

    # --- state, health, server -----------------------------------------------------------

    def _load_state(self) -> State:
        try:
            return load_state(self.state_file)
        except UsageError as e:
            self.emit("state-invalid", error=str(e))
            return State()

    def _save(self) -> None:
        if not self._dirty:
            return
        with self._lock:
            try:
                save_state(self.state_file, self.state)
                self._dirty = False
            except OSError as e:
                self.emit("state-error", error=f"{self.state_file}: {e.strerror or e}")
                self._dirty = False  # do not log it every second; the next change retries

    def health(self) -> healthmod.HealthReport:
        with self._lock:
            jobs = list(self.config.jobs.values())
            records = {n: replace(j) for n, j in self.state.jobs.items()}
            slack = self.config.metrics.health_slack if self.config.metrics else 0.5
            since = dict(self.since)
        return healthmod.check(jobs, records, self.clock.now(), since, slack, self.tz,
                               self.watches.dead())  # fmt: skip

    def _start_server(self, at_start: bool = False) -> None:
        """Listen on ``metrics.listen``; at start a failure is fatal (exit 1), on a reload
        it is logged and the daemon goes on without the endpoint."""
        m = self.config.metrics
        if m is None:
            return
        try:
            self.server = MetricsServer(m.host, m.port, self.metrics, self.health, self.page)
        except OSError as e:
            msg = f"metrics: cannot listen on {m.host}:{m.port}: {e.strerror or e}"
            if at_start:
                raise CasError(msg) from e
            self.emit("metrics-error", error=msg)
            return
        self.server.start()
        self.emit("metrics-listen", address=f"{m.host}:{self.server.port}")

    def _stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # --- reload and shutdown -------------------------------------------------------------

    def reload(self) -> None:
        sdnotify.notify("RELOADING=1")
        try:
            self._reload_config()
        finally:
            sdnotify.notify("READY=1")

    def _reload_config(self) -> None:
        try:
            new = load_config(self.config_path)
        except UsageError as e:
            self.emit("config-invalid", error=str(e), action="kept the running configuration")
            return
        old = self.config
        added = [n for n in new.jobs if n not in old.jobs]
        removed = [n for n in old.jobs if n not in new.jobs]
        changed = [n for n in new.jobs if n in old.jobs and new.jobs[n] != old.jobs[n]]
        now = self.clock.now()
        with self._lock:
            self.config = new
            self.schedule = Schedule(new.jobs.values(), self.clock, self.tz,
                                     self.state.last_runs())  # fmt: skip
            for name in removed:
                self.state.jobs.pop(name, None)
                self.since.pop(name, None)
                self.metrics.remove_job(name, old.jobs[name].store)
            for name in added:
                self.since[name] = now
            for name in changed:
                if new.jobs[name].cron != old.jobs[name].cron:
                    self.since[name] = now
        if state_path(self.config_path, new.state) != self.state_file:
            self.emit("config-note", message="a new state file takes effect at the next start")
        self.emit("config-reload", jobs=len(new.jobs), added=added, removed=removed,
                  changed=changed)  # fmt: skip
        self._announce([n for n in new.jobs if n in added or n in changed])
        if old.metrics != new.metrics:
            self._stop_server()
            self._start_server()
        self.watches.update(new)
        self._dirty = True

    def _shutdown(self) -> None:
        self.emit("daemon-stopping", running=[r.name for r in self.queue.running()],
                  stop_timeout=self.stop_timeout)  # fmt: skip
        self.queue.drop_waiting()
        deadline = self.clock.monotonic() + self.stop_timeout
        stopped = False
        while self.queue.running():
            self._collect()
            if not stopped and (self.clock.monotonic() >= deadline or self._signals > 1):
                stopped = True
                for r in self.queue.running():
                    r.stopped = True
                    if r.process is not None:
                        r.process.stop("stopped: the daemon is shutting down")
            self.wake.wait(0.2)
        watches = self.watches.stop()
        self._stop_server()
        self.notifier.wait()  # the last results' notifications go out before we exit
        with self._lock:
            self.state.watches = watches
            self.state.daemon_stopped = self.clock.now()
        self._dirty = True
        self._save()
        self.emit("daemon-stop")
