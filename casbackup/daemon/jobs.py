"""One run of one configured job (backup, sync, forget, gc, verify), in this process.

Invariants:
- ``run_job`` never raises for a failing job: every ``CasError`` (and any unexpected
  exception) becomes a ``JobOutcome`` with ``result="failure"``, the message and the
  exit code, so the runner decides about retries. Only ``BaseException``s that mean
  "stop" (``KeyboardInterrupt``, ``SystemExit``, ``JobStopped``) pass through; the
  operation's own ``with`` blocks have released its lock and closed its store by then.
- A verify that finds problems is a failure (exit 13), naming the first problems.
- A backup that saved its snapshot but could not read some files is ``"partial"``: the
  snapshot exists, the warnings say what is missing.
- After the operation, the status of every store the job touched is collected
  (``ops.status``) for the metrics; failing to collect it never fails the job.
- Passwords are resolved here (``config.resolve_password``), in the process that runs
  the job, and never leave it.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import SYSTEM, Clock
from ..errors import CasError, IntegrityError, UsageError
from ..ops.observer import Observer
from ..ops.status import StoreStatus, collect
from ..store import CacheSettings, Store, backend_retries, open_store
from .config import Config, JobConfig, SourceConfig, StoreConfig, resolve_password
from .hooks import HookLog, run_phase

if TYPE_CHECKING:
    from ..ops.archiver import ArchiveOptions

MAX_WARNINGS = 20
GC_LOCK_RETRY = 300.0  # a gc job waits this long for running backups (watches) to finish


class JobStopped(BaseException):
    """Raised in a job's process when the daemon stops it (SIGTERM): unwinds cleanly."""


@dataclass
class JobOutcome:
    job: str
    kind: str
    store: str
    result: str = "success"  # success | partial | failure
    started: float = 0.0  # seconds since the epoch
    duration: float = 0.0
    error: str | None = None
    exit_code: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    files: int = 0
    snapshot: str | None = None
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    stores: dict[str, StoreStatus] = field(default_factory=dict)  # store name -> status
    stopped: bool = False  # ended by a stop request (SIGTERM), not by its own failure
    retries: int = 0  # backend requests retried during the run
    hooks: list[dict[str, Any]] = field(default_factory=list)  # HookRun.to_map() of each hook

    @property
    def ok(self) -> bool:
        return self.result != "failure"


class CollectingObserver(Observer):
    """Counts progress and keeps the first warnings (thread-safe, never raises)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.files = 0
        self.warnings: list[str] = []
        self.warning_count = 0

    def progress(self, nbytes: int, nfiles: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.files += nfiles

    def warn(self, path: str, message: str) -> None:
        with self._lock:
            self.warning_count += 1
            if len(self.warnings) < MAX_WARNINGS:
                self.warnings.append(f"{path}: {message}")


def open_configured(cfg: StoreConfig) -> Store:
    password = resolve_password(cfg.password) if cfg.password is not None else None
    return open_store(cfg.url, (lambda: password) if password is not None else None,
                      cache=cache_settings(cfg))


def cache_settings(cfg: StoreConfig) -> CacheSettings:
    """The local cache of a configured store (``cache_dir``, ``no_cache``, ``cache_limit``)."""
    if cfg.no_cache:
        return CacheSettings.disabled()
    base = CacheSettings(Path(cfg.cache_dir)) if cfg.cache_dir else CacheSettings.default()
    return replace(base, tree_limit=cfg.cache_limit) if cfg.cache_limit is not None else base


def run_job(config: Config, name: str, clock: Clock = SYSTEM) -> JobOutcome:
    """Run job ``name`` of ``config`` once and report how it went."""
    job = config.jobs[name]
    out = JobOutcome(job=name, kind=job.type, store=job.store, started=clock.time())
    t0 = time.monotonic()
    retries0 = backend_retries()
    obs = CollectingObserver()
    hook_sets = [h for h in (config.hooks, job.hooks) if h is not None]
    env = {"CASBACKUP_JOB": name, "CASBACKUP_JOB_TYPE": job.type, "CASBACKUP_STORE": job.store}
    log = HookLog()
    failed = run_phase("before", hook_sets, env, log)
    if failed is not None:
        out.result, out.exit_code = "failure", 1
        out.error = f"before hook {_short(failed.command)} {failed.error}: job skipped"
    else:
        _run(config, job, out, obs, clock)
    env.update(CASBACKUP_RESULT=out.result, CASBACKUP_SNAPSHOT=out.snapshot or "",
               CASBACKUP_ERROR=out.error or "", CASBACKUP_EXIT_CODE=str(out.exit_code))
    after = list(reversed(hook_sets))
    if out.ok:
        failed = run_phase("after", after, env, log)
        if failed is not None:
            out.result, out.exit_code = "failure", 1
            out.error = f"after hook {_short(failed.command)} {failed.error}"
    else:
        run_phase("on_error", after, env, log)
    run_phase("finally", after, env, log)
    out.hooks = [r.to_map() for r in log.runs]
    out.warnings += [f"{r.phase} hook {_short(r.command)} {r.error}" for r in log.runs
                     if not r.ok and r.phase in ("on_error", "finally")]  # fmt: skip
    out.duration = time.monotonic() - t0
    out.retries = backend_retries() - retries0
    out.warnings = (obs.warnings + out.warnings)[:MAX_WARNINGS]
    if obs.warning_count > len(obs.warnings):
        out.details["warnings_total"] = obs.warning_count
    for store_name in dict.fromkeys(s for s in (job.store, job.to) if s):
        out.stores[store_name] = _status(config.stores[store_name], clock)
    return out


def _run(config: Config, job: JobConfig, out: JobOutcome, obs: CollectingObserver,
         clock: Clock) -> None:
    try:
        _RUNNERS[job.type](config, job, out, obs, clock)
    except CasError as e:
        out.result, out.error, out.exit_code = "failure", str(e), e.exit_code
    except Exception as e:  # a bug must not kill the daemon: report it with its place
        where = traceback.extract_tb(e.__traceback__)[-1]
        out.result, out.exit_code = "failure", 1
        out.error = f"internal error {type(e).__name__}: {e} ({where.filename}:{where.lineno})"


def _short(command: str, width: int = 60) -> str:
    return repr(command if len(command) <= width else command[: width - 1] + "…")


def _status(cfg: StoreConfig, clock: Clock) -> StoreStatus:
    try:
        with open_configured(cfg) as store:
            return collect(store, clock)
    except CasError as e:
        return StoreStatus(cfg.url, reachable=False, error=str(e), exit_code=e.exit_code)


def archive_options(src: SourceConfig) -> ArchiveOptions:
    """What a source's filters mean to the archiver (backup jobs and watches alike)."""
    from ..ops.archiver import ArchiveOptions
    from ..source.exclude import Excluder

    excluder = Excluder.from_options(
        src.excludes, src.pattern_files(), src.exclude_caches, ipatterns=src.iexcludes,
        markers=src.exclude_if_present, larger_than=src.exclude_larger_than)
    return ArchiveOptions(excluder=excluder, one_file_system=src.one_file_system)


def _backup(
    config: Config, job: JobConfig, out: JobOutcome, obs: CollectingObserver, clock: Clock
) -> None:
    from ..ops.backup import BackupOptions, backup

    assert job.source is not None  # config.py requires it for a backup job
    src = config.sources[job.source]
    opts = BackupOptions(type=job.backup_type, tags=list(job.tags), archive=archive_options(src))
    with open_configured(config.stores[job.store]) as store:
        res = backup(store, list(src.paths), opts, obs, clock)
    s = res.summary
    out.snapshot = res.snapshot.id
    out.bytes_read, out.bytes_added = s.bytes_read, s.bytes_added
    out.files = s.files_new + s.files_changed + s.files_unchanged
    out.details = {"parent": res.snapshot.parent, **s.to_map()}
    if s.unreadable:
        out.result = "partial"
        out.error = f"{s.unreadable} source file(s) could not be read; the snapshot holds the rest"
        out.exit_code = 3


def _dump(
    config: Config, job: JobConfig, out: JobOutcome, obs: CollectingObserver, clock: Clock
) -> None:
    """A database (or any) dump: the command's stdout becomes one file of a snapshot,
    committed only when the command exits 0."""
    from ..ops.backup import BackupOptions, backup
    from ..ops.command_stream import CommandStream

    assert job.command is not None and job.filename is not None  # config.py requires them
    with open_configured(config.stores[job.store]) as store, \
            CommandStream(job.command) as stream:  # fmt: skip
        opts = BackupOptions(tags=list(job.tags), stdin=stream.buffered(),
                             stdin_filename=job.filename)
        res = backup(store, [], opts, obs, clock)
    out.snapshot = res.snapshot.id
    out.bytes_read, out.bytes_added = res.summary.bytes_read, res.summary.bytes_added
    out.files = 1
    out.details = {"parent": res.snapshot.parent, **res.summary.to_map()}


def _verify(
    config: Config, job: JobConfig, out: JobOutcome, obs: CollectingObserver, clock: Clock
) -> None:
    from ..ops.verify import verify

    with open_configured(config.stores[job.store]) as store:
        rep = verify(store, subset=job.read_data_subset, observer=obs)
    out.bytes_read = obs.bytes
    out.details = {
        "snapshots": rep.snapshots, "trees": rep.trees, "packs_checked": rep.packs_checked,
        "packs_read": rep.packs_read, "blobs_read": rep.blobs_read, "notes": rep.notes,
    }  # fmt: skip
    if not rep.ok:
        out.warnings = rep.problems[:MAX_WARNINGS]
        shown = "; ".join(rep.problems[:3]) + ("; …" if len(rep.problems) > 3 else "")
        raise IntegrityError(f"verify found {len(rep.problems)} problem(s): {shown}")


def _gc(
    config: Config, job: JobConfig, out: JobOutcome, obs: CollectingObserver, clock: Clock
) -> None:
    from ..ops.gc import GcOptions, gc

    with open_configured(config.stores[job.store]) as store:
        rep = gc(store, GcOptions(retry_lock=GC_LOCK_RETRY), obs, clock)
    out.bytes_read = obs.bytes
    out.details = {"gc": rep.to_map()}
    out.warnings = list(rep.warnings)


def _forget(
    config: Config, job: JobConfig, out: JobOutcome, obs: CollectingObserver, clock: Clock
) -> None:
    from ..ops.forget import forget
    from ..ops.gc import GcOptions, gc

    if job.policy is None:
        raise UsageError(f"job {job.name}: a forget job needs a policy")
    with open_configured(config.stores[job.store]) as store:
        res = forget(store, job.policy, clock=clock)
        out.details = {"removed": list(res.removed), "kept": len(res.kept)}
        if job.prune:
            rep = gc(store, GcOptions(retry_lock=GC_LOCK_RETRY), obs, clock)
            out.details["gc"] = rep.to_map()
            out.warnings = list(rep.warnings)


def _sync(
    config: Config, job: JobConfig, out: JobOutcome, obs: CollectingObserver, clock: Clock
) -> None:
    from ..ops.sync import SyncObserver, sync

    class Forward(SyncObserver):
        def progress(self, nbytes: int, nfiles: int = 0) -> None:
            obs.progress(nbytes, nfiles)

        def warn(self, path: str, message: str) -> None:
            obs.warn(path, message)

    assert job.to is not None  # config.py requires it for a sync job
    with open_configured(config.stores[job.store]) as src, open_configured(
        config.stores[job.to]
    ) as dst:
        res = sync(src, dst, observer=Forward())
    out.bytes_read = obs.bytes
    out.bytes_added = res.stored
    out.details = {
        "selected": res.selected, "present": res.present, "copied": len(res.copied),
        "blobs": res.blobs, "bytes": res.bytes, "stored": res.stored,
        "snapshots": [c.dst_id for c in res.copied],
    }  # fmt: skip


_RUNNERS = {"backup": _backup, "dump": _dump, "verify": _verify, "gc": _gc, "forget": _forget,
            "sync": _sync}
