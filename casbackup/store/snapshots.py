"""An open store's snapshot objects: listing, reading (in parallel on a remote store),
putting one, deleting one. A layer of ``Store`` (store.py).

Invariants:
- A snapshot is returned only if its object hashes to its name, unseals and decodes
  (``read_object``); ``snapshots`` leaves out a damaged one, records it in
  ``damaged_snapshots`` and warns once per name through ``on_warning``.
- ``_put_snapshot`` is the commit point's last write and is called only by
  ``Store.save_snapshot``, after the flush of packs and index (DESIGN §9 write order).
- At most ``SNAPSHOT_READERS`` reads run at once, and none on threads for a local store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import IntegrityError, NotFound
from ..faults import crash_point
from ..ids import SNAPSHOT, object_name
from ..model.snapshot import Snapshot
from .layout import SNAPSHOTS_DIR, name_of, snapshot_key
from .objects import StoreObjects

SNAPSHOT_READERS = 16  # concurrent snapshot reads of a remote store (bounded)


class StoreSnapshots(StoreObjects):
    """The snapshot objects of an open store."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.damaged_snapshots: dict[str, str] = {}  # name -> why, found by snapshots()

    def snapshot_ids(self) -> list[str]:
        # each once: a listing that repeats a key (a non-conforming S3 clone) must not
        # make one snapshot two (forget --keep-last 1 deleted the one it kept)
        return list(dict.fromkeys(name_of(i.key) for i in self.backend.list(SNAPSHOTS_DIR)))

    def load_snapshot(self, name: str, *, cached: bool = True) -> Snapshot:
        crash_point("store:load-snapshot")
        return Snapshot.decode(self.read_object(SNAPSHOTS_DIR, name, SNAPSHOT, cached=cached),
                               name)

    def snapshots(self) -> list[Snapshot]:
        """Every readable snapshot, oldest first. A damaged snapshot object (it does not
        hash to its name, unseal or decode) is left out, recorded in ``damaged_snapshots``
        and reported once through ``on_warning``; one deleted meanwhile is left out."""
        snaps = []
        names = self.snapshot_ids()
        if self.object_cache is not None:
            self.object_cache.retain(SNAPSHOTS_DIR, names)

        def load(name: str) -> Snapshot | None:
            try:
                return self.load_snapshot(name)
            except NotFound:
                return None  # forgotten by someone else since the listing
            except IntegrityError as e:
                self._damaged_snapshot(name, str(e))
                return None

        for snap in self._map_reads(load, names):
            if snap is not None:
                snaps.append(snap)
        snaps.sort(key=lambda s: (s.time, s.id))
        return snaps

    def delete_snapshot(self, name: str) -> None:
        self.backend.delete(snapshot_key(name))

    def _put_snapshot(self, snap: Snapshot) -> str:
        """Seal and put SNAP (``Store.save_snapshot``'s last step); its name, also set as
        ``snap.id``."""
        data = self.codec.seal(SNAPSHOT, snap.encode())
        name = object_name(data)
        self.put_named(snapshot_key(name), data)
        if self.object_cache is not None:
            self.object_cache.put_object(SNAPSHOTS_DIR, name, data)
        snap.id = name
        return name

    def _map_reads(self, fn: Callable[[str], Snapshot | None], names: list[str]
                   ) -> Iterator[Snapshot | None]:
        """FN over NAMES: in this thread on a local store, else on up to the backend's
        connection count of threads (``SNAPSHOT_READERS`` at most), so a first
        ``snapshots`` of a remote store waits for about one round trip per that many
        snapshots, not one per snapshot. Results in the order of NAMES."""
        props = self.backend.properties()
        workers = min(SNAPSHOT_READERS, max(1, props.connections), len(names))
        if props.is_local or workers <= 1:
            yield from map(fn, names)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snap") as pool:
            yield from pool.map(fn, names)

    def _damaged_snapshot(self, name: str, why: str) -> None:
        if name not in self.damaged_snapshots and self.on_warning is not None:
            self.on_warning(f"{snapshot_key(name)} is damaged and was skipped ({why}); "
                            "`casbackup repair` or `forget` it to remove it")
        self.damaged_snapshots[name] = why
