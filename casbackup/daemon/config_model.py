"""The daemon's job model: what a valid ``casbackup.yaml`` says, as frozen plain data
(stores, sources, jobs, watches, the metrics endpoint, hooks and notifications).

Invariants:

* Values are built only by the loader (``daemon/config.py``) after validation: every
  reference names a defined store or source, paths are absolute and normalised, a job
  holds only the keys its type allows, and no field holds a secret (a password or a
  notification URL is a ``PasswordRef``, resolved by ``secrets.resolve_password`` when a
  job runs).
* Frozen: the daemon, ``status`` and ``test`` share one ``Config`` without copying;
  ``lines`` (an entry's line in the file, for later messages) takes no part in equality.
* No I/O and no YAML here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from casbackup.ops.retention import Policy

from .hooks import Hooks
from .secrets import PasswordRef

JobType = Literal["backup", "dump", "sync", "forget", "gc", "verify"]
BackupType = Literal["full", "incremental", "differential", "snapshot"]


@dataclass(frozen=True, slots=True)
class StoreConfig:
    name: str
    url: str
    password: PasswordRef | None = None
    # the local cache of a remote store (store/cache.py): ``cache_dir`` (None: the
    # default place), ``no_cache: true`` for none, ``cache_limit`` for its tree blobs
    cache_dir: str | None = None
    no_cache: bool = False
    cache_limit: int | None = None


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    paths: tuple[str, ...]
    excludes: tuple[str, ...] = ()
    exclude_file: str | None = None
    one_file_system: bool = False
    exclude_caches: bool = False  # skip directories holding a CACHEDIR.TAG (as --exclude-caches)
    exclude_files: tuple[str, ...] = ()  # more pattern files (as repeated --exclude-file)
    iexcludes: tuple[str, ...] = ()  # case-insensitive patterns (as --iexclude)
    exclude_if_present: tuple[str, ...] = ()  # marker file names (as --exclude-if-present)
    exclude_larger_than: int | None = None  # bytes (as --exclude-larger-than)

    def pattern_files(self) -> list[str]:
        return ([self.exclude_file] if self.exclude_file else []) + list(self.exclude_files)


@dataclass(frozen=True, slots=True)
class JobConfig:
    name: str
    type: JobType
    cron: str
    store: str
    source: str | None = None  # backup
    backup_type: BackupType = "incremental"  # backup
    tags: tuple[str, ...] = ()  # backup
    to: str | None = None  # sync
    policy: Policy | None = None  # forget
    prune: bool = False  # forget
    read_data_subset: str | None = None  # verify: "5%" or "1/7"
    retries: int = 0
    retry_delay: float = 60.0
    catch_up: bool = False
    timeout: float | None = None
    command: str | None = None  # dump: the command whose stdout is saved
    filename: str | None = None  # dump: the file name it is saved under
    hooks: Hooks | None = None
    notify: NotifyConfig | None = None


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """Where a job's results are announced (``daemon/notify.py``); every URL is a
    reference like a password, since notification URLs carry tokens."""

    events: tuple[str, ...] = ("failure",)  # of start, success, failure
    urls: tuple[PasswordRef, ...] = ()  # apprise URLs
    webhooks: tuple[PasswordRef, ...] = ()  # plain JSON POSTs
    healthchecks: PasswordRef | None = None  # a ping URL: /start, success, /fail


@dataclass(frozen=True, slots=True)
class WatchConfig:
    source: str
    store: str
    debounce: float = 2.0
    max_delay: float = 60.0
    sync_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    host: str
    port: int
    health_slack: float = 0.5  # /healthz: a job is overdue this share of its interval late


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    stores: Mapping[str, StoreConfig]
    sources: Mapping[str, SourceConfig]
    jobs: Mapping[str, JobConfig]
    watches: tuple[WatchConfig, ...] = ()
    metrics: MetricsConfig | None = None
    state: str | None = None  # the daemon's state file (default: see daemon.state)
    hooks: Hooks | None = None  # around every job
    notify: NotifyConfig | None = None  # for every job without its own
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)  # key -> line
