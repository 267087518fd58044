"""Automatic consolidation of small index objects (issue #12 item 4).

Every backup leaves one or more small index objects; with hundreds of hosts backing up
every hour, listing them (and reading the new ones) would become every command's cost.
After a backup has committed, ``maybe_consolidate`` merges the small ones into one
object once there are more than ``MIN_OBJECTS`` of them.

Invariants (in step with gc, DESIGN §8):
- It runs under a *maintenance* lock taken without waiting: never beside a gc or a
  repair (if one holds the lock it does nothing), never delaying a backup (shared locks
  do not conflict with it), and only after its own backup's snapshot is committed. Its
  work is bounded (``MAX_PER_RUN`` small objects), so a gc that finds its lock waits for
  it to finish instead of failing (``Session.acquire``'s ``outwait``).
  Because a gc's phase 2 waits for every maintenance lock that is not provably dead, no
  pack is deleted while it runs, even if it is paused.
- The new object is *exact*: it names every pack of every object it supersedes, condemned
  or not, so the set of packs the store's index names is unchanged; it is durable before
  any superseded object is deleted (G3's order). A crash leaves both (duplicates only).
- Readers already treat an index object vanishing between listing and read as "list
  again"; the compact cache keeps files built from exactly-superseded objects.
- A failure (no space, a damaged object) only leaves the objects as they were: it is
  reported through ``warn`` and never fails the backup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..clock import SYSTEM, Clock
from ..errors import CasError, Locked, NotFound
from ..faults import crash_point
from ..ids import INDEX, object_name
from .index import PackInfo, decode_index_object, encode_index
from .layout import INDEX_DIR, index_key, name_of
from .locks import maintenance_lock

if TYPE_CHECKING:
    from .store import Store

OPERATION = "consolidate"  # its lock's operation: gc waits for it (``gc.gc``)
MIN_OBJECTS = 64  # consolidate once more small objects than this are listed
SMALL = 1 << 20  # bytes: an object this big or bigger is left alone
MAX_PER_RUN = 1024  # small objects merged by one run (bounds its time and memory)


def small_objects(store: Store) -> list[str]:
    """Names of the index objects under ``SMALL`` bytes, oldest name order."""
    return sorted(name_of(i.key) for i in store.backend.list(INDEX_DIR)
                  if i.size < SMALL)


def maybe_consolidate(store: Store, clock: Clock = SYSTEM,
                      warn: Callable[[str], None] | None = None,
                      note: Callable[[str], None] | None = None) -> str | None:
    """Consolidate when there are more than MIN_OBJECTS small index objects; the new
    object's name, or None when nothing was done. Never raises a ``CasError``: a gc or
    repair holding the maintenance lock means skipping it (one line to NOTE: it is an
    optimisation, not the caller's failure); any other failure goes to WARN."""
    try:
        names = small_objects(store)
        if len(names) <= MIN_OBJECTS:
            return None
        with maintenance_lock(store, OPERATION, clock=clock):
            crash_point("consolidate:locked")
            return consolidate(store, small_objects(store)[:MAX_PER_RUN])
    except Locked as e:
        # a gc or repair runs: it consolidates, or we do next time
        if note is not None:
            note(f"index consolidation skipped: {e}")
        return None
    except CasError as e:
        if warn is not None:
            warn(f"index consolidation skipped: {e}")
        return None


def consolidate(store: Store, names: list[str]) -> str | None:
    """Write one exact object naming every pack of ``names``, superseding them (and what
    they superseded, if they were exact themselves), then delete them. The caller holds
    a maintenance lock."""
    packs: dict[str, PackInfo] = {}
    supersedes: set[str] = set()
    read: list[str] = []
    for name in names:
        try:
            data = store.read_object(INDEX_DIR, name, INDEX)
        except CasError:
            with contextlib.suppress(NotFound):
                store.backend.stat(index_key(name))
                raise  # present, so damaged: leave everything as it is
            continue  # gone meanwhile
        got, sup, exact = decode_index_object(data, name)
        for p in got:
            packs.setdefault(p.name, p)
        if exact:
            supersedes.update(sup)
        read.append(name)
    if len(read) < 2:
        return None
    supersedes.update(read)
    sealed = store.codec.seal(INDEX, encode_index(list(packs.values()), sorted(supersedes),
                                                  exact=True))
    new = object_name(sealed)
    store.put_named(index_key(new), sealed)  # durable (puts are atomic and synced) ...
    for name in read:  # ... before anything it supersedes goes
        if name != new:
            with contextlib.suppress(NotFound):
                store.backend.delete(index_key(name))
    return new
