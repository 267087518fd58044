"""status: what a store looks like from outside: reachable, size, snapshots, locks.

Invariants:
- Read only: status never writes, never takes a lock and never removes one (a stale lock
  is reported as stale, ``unlock`` removes it).
- ``probe`` never raises a ``CasError``: an unreachable store, a wrong password or a
  damaged snapshot is a ``StoreStatus`` with ``reachable=False`` (or ``error`` set), and
  the error's exit code, so a report on many stores always completes.
- ``size_bytes`` is the sum of the pack objects' sizes as listed by the backend (what the
  store occupies, less the small index/snapshot objects); ``logical_bytes`` is the sum
  of every snapshot's source size, so ``dedup_ratio = logical / stored``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..clock import SYSTEM, Clock
from ..errors import CasError
from ..store import CacheSettings, Store, open_store
from ..store.locks import LockInfo, list_locks


@dataclass
class StoreStatus:
    url: str
    reachable: bool = False
    error: str | None = None
    exit_code: int = 0
    size_bytes: int = 0
    packs: int = 0
    snapshots: int = 0
    last_snapshot_time: float | None = None  # seconds since the epoch
    logical_bytes: int = 0
    locks: list[LockInfo] = field(default_factory=list)
    stale_locks: list[str] = field(default_factory=list)  # names of locks that are stale

    @property
    def dedup_ratio(self) -> float | None:
        return self.logical_bytes / self.size_bytes if self.size_bytes else None

    def to_map(self, now: float) -> dict[str, Any]:
        age = now - self.last_snapshot_time if self.last_snapshot_time is not None else None
        return {
            "url": display_url(self.url),
            "reachable": self.reachable,
            "error": self.error,
            "size_bytes": self.size_bytes,
            "packs": self.packs,
            "snapshots": self.snapshots,
            "last_snapshot_time": self.last_snapshot_time,
            "last_snapshot_age": age,
            "logical_bytes": self.logical_bytes,
            "dedup_ratio": self.dedup_ratio,
            "locks": [
                {
                    "exclusive": lk.exclusive,
                    "operation": lk.operation,
                    "hostname": lk.hostname,
                    "pid": lk.pid,
                    "username": lk.username,
                    "time": lk.time,
                    "stale": lk.name in self.stale_locks,
                }
                for lk in self.locks
            ],
        }


def display_url(url: str) -> str:
    """A store URL fit for output and labels: no password, no query (the query of an
    ``s3://`` or ``sftp://`` URL may carry credentials or key paths)."""
    if "://" not in url:
        return os.path.abspath(url)  # a local store: the same label from any directory
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def collect(store: Store, clock: Clock = SYSTEM,
            snapshots: list[tuple[float, int]] | None = None) -> StoreStatus:
    """The status of an open store (raises ``CasError`` if it cannot be read);
    ``snapshots``: the (time, total size) of its snapshots, when the caller has them."""
    st = StoreStatus(store.url, reachable=True)
    for info in store.list_pack_objects():
        st.size_bytes += info.size
        st.packs += 1
    if snapshots is None:
        snapshots = [(s.time, s.summary.total_size) for s in store.snapshots()]
    st.snapshots = len(snapshots)
    st.logical_bytes = sum(size for _, size in snapshots)
    st.last_snapshot_time = max((t for t, _ in snapshots), default=None)
    st.locks = list_locks(store)
    now = clock.time()
    # read only, so no probe object: our clock stands in for the backend's (a hint)
    st.stale_locks = [lk.name for lk in st.locks if lk.stale(now, now)]
    return st


def probe(
    url: str, password: Callable[[], str] | None, clock: Clock = SYSTEM,
    cache: CacheSettings | None = None,
) -> StoreStatus:
    """Open the store at ``url`` and collect its status; errors become the status."""
    try:
        with open_store(url, password, cache=cache) as store:
            return collect(store, clock)
    except CasError as e:
        return StoreStatus(url, reachable=False, error=str(e), exit_code=e.exit_code)
    except OSError as e:  # a backend that failed below the error tree
        return StoreStatus(url, reachable=False, error=e.strerror or str(e), exit_code=1)
