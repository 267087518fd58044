"""forget: delete the snapshot objects that a retention policy (``ops/retention.py``, pure)
does not keep, or the snapshots named by id. ``--prune`` then runs gc (``ops/gc.py``).

Invariants:
- Only snapshot objects are deleted; the data they alone referenced stays until gc.
  forget takes no lock: deleting a snapshot is safe alongside backups (a backup reads
  its parent snapshot's trees, never writes through another snapshot), and gc treats a
  snapshot that disappears while it marks as forgotten (keeping more is always safe).
- A damaged snapshot object is never chosen by a policy (``Store.snapshots`` skips it
  with a warning) but can be forgotten by id.
- The policy sees every snapshot that passes the ``hosts`` / ``tags`` / ``paths`` filters
  (``ops/snapsel.py``: each tags entry is a comma-separated group); the
  decision for each is returned, with every rule that kept it, in ``dry_run`` too.
- Snapshot times are UTC seconds in the store; buckets use ``tz`` (local by default).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from ..clock import SYSTEM, Clock
from ..errors import IntegrityError, NotFound, NothingMatched, UsageError
from ..model.snapshot import Snapshot
from ..store import Store
from .groupkey import GroupKey
from .retention import Decision, Policy, SnapshotEntry, apply_policy
from .snapsel import ANY, SnapshotFilter, snapshot_name


@dataclass
class ForgetResult:
    groups: dict[GroupKey, list[Decision]] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    dry_run: bool = False
    total: int = 0  # readable snapshots in the store, before the hosts / tags filters

    @property
    def kept(self) -> list[str]:
        return [d.snapshot.id for ds in self.groups.values() for d in ds if d.keep]


def entry(s: Snapshot) -> SnapshotEntry:
    return SnapshotEntry(s.id, datetime.fromtimestamp(s.time, UTC), s.hostname,
                         tuple(s.paths), tuple(s.tags))


def forget(store: Store, policy: Policy, *, dry_run: bool = False,
           hosts: list[str] | None = None, tags: list[str] | None = None,
           paths: list[str] | None = None, tz: tzinfo | None = None,
           clock: Clock = SYSTEM) -> ForgetResult:
    every = store.snapshots()
    select = SnapshotFilter.of(hosts, tags, paths)
    snaps = [s for s in every if select.match(s)]
    now = datetime.fromtimestamp(clock.time(), UTC)
    res = ForgetResult(dry_run=dry_run, snapshots={s.id: s for s in snaps}, total=len(every))
    res.groups = apply_policy([entry(s) for s in snaps], policy, tz=tz, now=now)
    for decisions in res.groups.values():
        for d in decisions:
            if not d.keep:
                res.removed.append(d.snapshot.id)
    if not dry_run:
        _delete(store, res.removed)
    return res


def forget_ids(store: Store, refs: list[str], *, dry_run: bool = False,
               filt: SnapshotFilter = ANY) -> ForgetResult:
    """Forget the snapshots named by id (prefixes of 4+ hex digits); every id must
    resolve (and, with an active FILT, name a snapshot it accepts: else
    ``NothingMatched``) before anything is deleted. Without a filter a damaged snapshot
    object is forgotten like any other (it is named, not read; ``snapshots`` holds only
    the readable ones); a filter cannot accept a snapshot it cannot read."""
    if not refs:
        raise UsageError("no snapshot ids given")
    if any(r.startswith("latest") for r in refs):
        raise UsageError("forget takes snapshot ids, not 'latest'")
    names = list(dict.fromkeys(snapshot_name(store, r) for r in refs))
    res = ForgetResult(dry_run=dry_run, removed=names)
    for name in names:
        with contextlib.suppress(IntegrityError, NotFound):
            res.snapshots[name] = store.load_snapshot(name)
        snap = res.snapshots.get(name)
        if filt and (snap is None or not filt.match(snap)):
            raise NothingMatched(f"snapshot {name[:8]} does not match {filt.describe()}; "
                                 "nothing was forgotten")
    if not dry_run:
        _delete(store, res.removed)
    return res


def _delete(store: Store, ids: list[str]) -> None:
    for sid in ids:
        with contextlib.suppress(NotFound):  # forgotten by someone else meanwhile
            store.delete_snapshot(sid)
