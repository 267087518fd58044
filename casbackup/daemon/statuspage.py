"""Gathering what the status page shows: a report of every configured store (opened with
its password reference, each snapshot loaded once per process thanks to the caches) and
every job's state, next run and recent runs.

Invariants: read only (no lock written, no state changed); a store that cannot be opened
is a report with ``reachable=False`` and its error, never an exception; at most one
gathering runs at a time per ``StatusPage`` and its result is reused for ``max_age``
seconds or until ``invalidate`` (the daemon calls it when a job finishes), so a page that
is reloaded often does not reopen every store each time.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from ..errors import CasError
from ..ops.report import SnapshotCache, StoreReport, store_report
from ..ops.status import StoreStatus
from .config import Config
from .jobs import open_configured
from .page import JobRow, PageData, render
from .schedule import next_run
from .state import State


def job_rows(config: Config, state: State, now: datetime) -> list[JobRow]:
    rows = []
    for name, job in config.jobs.items():
        js = state.jobs.get(name)
        nxt = js.next_run if js is not None and js.next_run is not None else None
        if nxt is None:
            nxt = next_run(job.cron, now.astimezone())
        rows.append(JobRow(
            name, job.type, job.store, job.cron,
            js.last_result if js else None,
            js.last_run.timestamp() if js and js.last_run else None,
            js.last_duration if js else None, js.last_error if js else None,
            nxt.timestamp(), js.runs if js else 0, js.failures if js else 0))  # fmt: skip
    return rows


class StatusPage:
    def __init__(self, max_age: float = 30.0) -> None:
        self.max_age = max_age
        self._caches: dict[str, SnapshotCache] = {}
        self._mu = threading.Lock()
        self._last: tuple[float, list[StoreReport]] | None = None

    def invalidate(self) -> None:
        self._last = None

    def reports(self, config: Config) -> list[StoreReport]:
        with self._mu:
            if self._last is not None and time.monotonic() - self._last[0] < self.max_age:
                return self._last[1]
            out = []
            for name, sc in config.stores.items():
                cache = self._caches.setdefault(sc.url, SnapshotCache())
                try:
                    with open_configured(sc) as store:
                        out.append(store_report(name, store, cache))
                except CasError as e:
                    status = StoreStatus(sc.url, error=str(e), exit_code=e.exit_code)
                    out.append(StoreReport(name, status))
            self._last = (time.monotonic(), out)
            return out

    def html(self, config: Config, state: State, title: str = "casbackup") -> str:
        now = datetime.now().astimezone()
        data = PageData(title, now.timestamp(), self.reports(config),
                        job_rows(config, state, now), list(state.history))
        return render(data)
