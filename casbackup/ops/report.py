"""report: what a store's history looks like, for the status page (``daemon/page.py``).

Invariants:
- Read only, like ``status``: no lock is taken or written.
- Snapshot objects are immutable and named by their content, so a ``SnapshotCache``
  loads each snapshot once: a refresh lists ``snapshots/`` and loads only names it has
  not seen (a damaged one is skipped and counted), and forgets names that are gone.
- Sizes are the snapshot summaries' own (``total_size`` = source size, ``bytes_added`` =
  new plaintext, ``bytes_stored`` = what it added after compression and sealing); the
  store's size is its packs' listed sizes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..errors import CasError
from ..store import Store
from .status import StoreStatus, collect


@dataclass(frozen=True, slots=True)
class SnapshotPoint:
    id: str
    time: float
    hostname: str
    type: str
    tags: tuple[str, ...]
    total_size: int
    bytes_added: int
    bytes_stored: int
    duration: float
    files: int


@dataclass
class StoreReport:
    name: str
    status: StoreStatus
    snapshots: list[SnapshotPoint] = field(default_factory=list)  # oldest first
    damaged: int = 0  # snapshot objects that could not be read

    @property
    def compression_ratio(self) -> float | None:
        """New plaintext over what it took to store it, over the whole history."""
        stored = sum(s.bytes_stored for s in self.snapshots)
        return sum(s.bytes_added for s in self.snapshots) / stored if stored else None


class SnapshotCache:
    """The snapshot points of one store, kept across refreshes (thread-safe)."""

    def __init__(self) -> None:
        self._points: dict[str, SnapshotPoint] = {}
        self._mu = threading.Lock()

    def refresh(self, store: Store) -> tuple[list[SnapshotPoint], int]:
        with self._mu:
            names = set(store.snapshot_ids())
            for gone in set(self._points) - names:
                del self._points[gone]
            damaged = 0
            for name in sorted(names - set(self._points)):
                try:
                    s = store.load_snapshot(name)
                except CasError:
                    damaged += 1
                    continue
                m = s.summary
                self._points[name] = SnapshotPoint(
                    name, s.time, s.hostname, s.type, tuple(s.tags), m.total_size,
                    m.bytes_added, m.bytes_stored, m.duration,
                    m.files_new + m.files_changed + m.files_unchanged)  # fmt: skip
            return sorted(self._points.values(), key=lambda p: (p.time, p.id)), damaged


def store_report(name: str, store: Store, cache: SnapshotCache | None = None) -> StoreReport:
    """The report of an open store (raises ``CasError`` if it cannot be read)."""
    points, damaged = (cache or SnapshotCache()).refresh(store)
    status = collect(store, snapshots=[(p.time, p.total_size) for p in points])
    return StoreReport(name, status, points, damaged)
