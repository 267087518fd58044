"""The daemon's state file: what each job did last and when it runs next, so that a
restarted daemon knows which runs it missed (``catch_up``) and ``casbackup status`` can
report jobs without talking to the daemon.

Invariants:

* The file is JSON, written atomically (temp file in the same directory, fsync,
  ``os.replace``, fsync of the directory): a reader sees the old or the new state, never
  a torn one. A missing file is an empty state; an unreadable or damaged one is reported
  as a ``UsageError`` naming the file by ``load_state`` and treated as empty by the
  daemon (it must not refuse to start because of its own bookkeeping).
* ``last_run`` is the *start* of the last finished run. A run the daemon did not finish
  (killed mid-job) leaves ``last_run`` at the previous run, so its slot counts as missed.
* Times are stored as ISO 8601 in UTC; the file never holds a secret.
* ``history`` keeps the last ``HISTORY`` finished runs (job, start, duration, result, one
  line of error) for the status page's timeline; older entries drop off.
* Location: the configuration's ``state`` key, else ``$XDG_STATE_HOME`` (or
  ``~/.local/state``) ``/casbackup/state-<hash of the config path>.json``. One daemon per
  state file: ``exclusive`` holds an ``flock`` on ``<state>.lock`` for the daemon's life
  (released by the kernel if it dies), so a second daemon refuses to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError

VERSION = 1
HISTORY = 2000


@dataclass
class RunRecord:
    job: str
    started: float  # seconds since the epoch
    duration: float
    result: str  # success | partial | failure
    error: str | None = None


@dataclass
class JobState:
    last_run: datetime | None = None  # start of the last finished run (success or not)
    last_result: str | None = None  # "success" | "partial" | "failure"
    last_success: datetime | None = None  # end of the last successful run
    last_duration: float | None = None
    last_error: str | None = None
    next_run: datetime | None = None
    runs: int = 0
    failures: int = 0


@dataclass
class State:
    jobs: dict[str, JobState] = field(default_factory=dict)
    daemon_pid: int | None = None
    daemon_started: datetime | None = None
    daemon_stopped: datetime | None = None
    watches: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[RunRecord] = field(default_factory=list)

    def job(self, name: str) -> JobState:
        return self.jobs.setdefault(name, JobState())

    def record(self, run: RunRecord) -> None:
        self.history.append(run)
        del self.history[:-HISTORY]

    def last_runs(self) -> dict[str, datetime]:
        return {n: j.last_run for n, j in self.jobs.items() if j.last_run is not None}


def default_state_path(config_path: str | os.PathLike[str]) -> Path:
    """Where the daemon of ``config_path`` keeps its state when the config says nothing."""
    resolved = str(Path(config_path).expanduser().resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:12]
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "casbackup" / f"state-{digest}.json"


def state_path(config_path: str | os.PathLike[str], configured: str | None) -> Path:
    return Path(configured) if configured else default_state_path(config_path)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock of the state file ``path`` (``UsageError`` if another daemon has it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UsageError(
                f"another daemon (pid {other}) already uses the state file {path}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    t = datetime.fromisoformat(str(value))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t is not None else None


_TIME_FIELDS = {"last_run", "last_success", "next_run"}


def _job_from_map(m: dict[str, Any]) -> JobState:
    known = {f.name for f in fields(JobState)}
    args: dict[str, Any] = {
        k: (_time(v) if k in _TIME_FIELDS else v) for k, v in m.items() if k in known
    }
    return JobState(**args)


def load_state(path: Path) -> State:
    """The state at ``path`` (empty when the file does not exist)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return State()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: cannot read the daemon state: {e}") from e
    try:
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if raw.get("version") != VERSION:
            raise ValueError(f"unknown version {raw.get('version')!r}")
        daemon = raw.get("daemon") or {}
        return State(
            jobs={str(n): _job_from_map(dict(m)) for n, m in (raw.get("jobs") or {}).items()},
            daemon_pid=daemon.get("pid"),
            daemon_started=_time(daemon.get("started")),
            daemon_stopped=_time(daemon.get("stopped")),
            watches={str(k): dict(v) for k, v in (raw.get("watches") or {}).items()},
            history=[RunRecord(str(r["job"]), float(r["started"]), float(r["duration"]),
                               str(r["result"]), r.get("error"))
                     for r in (raw.get("history") or [])][-HISTORY:],
        )
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise UsageError(f"{path}: damaged daemon state: {e}") from e


def to_map(state: State) -> dict[str, Any]:
    jobs = {}
    for name, job in sorted(state.jobs.items()):
        m = asdict(job)
        for k in _TIME_FIELDS:
            m[k] = _iso(m[k])
        jobs[name] = m
    return {
        "version": VERSION,
        "daemon": {
            "pid": state.daemon_pid,
            "started": _iso(state.daemon_started),
            "stopped": _iso(state.daemon_stopped),
        },
        "jobs": jobs,
        "watches": state.watches,
        "history": [asdict(r) for r in state.history],
    }


def save_state(path: Path, state: State) -> None:
    """Write ``state`` to ``path`` atomically (creating the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(to_map(state), indent=2, sort_keys=True).encode() + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
