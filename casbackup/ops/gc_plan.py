"""gc's plan: which packs to keep, delete, repack or drop, from per-pack live bytes.

A blob is live in the pack the *clean* view resolves it to (``gc_sets``), so a pack's
live count and bytes are a vectorised sum over the index records whose live bit is set
(``IndexView.live_totals``); only packs resurrected this run (an overlay of Python
objects) are summed in Python. Then, per pack of clean: nothing live -> delete; unused
share above ``max_unused`` -> repack; missing on the backend -> dropped if nothing in it
is live (else gc stops: ``IntegrityError``); a pack no index names -> orphan. An unused
pack is condemned only if it is *condemnable* (rule G2: no live session other than
ours, or its backend mtime at most the epoch of a ripe record); others are deferred.

Invariants: the plan reads, never writes; every pack of the listing is in exactly one
of keep, delete, repack, orphans, or counted as kept for a later run (deferred, orphans
kept), or is already condemned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import IntegrityError
from ..store import ObjectInfo, pack_key
from .gc_sets import BlobSets


@dataclass
class Plan:
    keep: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    repack: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    live_bytes: dict[str, int] = field(default_factory=dict)  # of packs to repack
    deferred: int = 0
    orphans_kept: int = 0

    def condemned(self) -> list[str]:
        return self.delete + self.repack + self.orphans


def header_bound(n: int) -> int:
    """An upper bound of a pack's sealed header + trailer for ``n`` blobs (each row is
    at most ~56 msgpack bytes; the seal adds a tag, a nonce and a MAC)."""
    return 96 + 64 * n


def live_per_pack(sets: BlobSets) -> dict[str, tuple[int, int]]:
    """(live blobs, live bytes) of every pack of the clean view, by name."""
    t = sets.t
    count: Any
    count, nbytes = t.live_totals(sets.live)
    out: dict[str, tuple[int, int]] = {}
    clean = (~sets.cond).nonzero()[0].tolist()
    cl, nb = count.tolist(), nbytes.tolist()
    for no in clean:
        out[t.names[no]] = (cl[no], nb[no])
    for name, p in sets.clean_extra.packs.items():
        ids = [e.id for e in p.entries]
        flags = sets.live_flags(ids)
        n = b = 0
        for e, live in zip(p.entries, flags, strict=True):
            if live and sets.clean_pack_of(e.id) == name:
                n, b = n + 1, b + e.length
        out[name] = (n, b)
    return out


def make_plan(sets: BlobSets, listing: dict[str, ObjectInfo], cond_all: set[str],
              max_unused: float, fresh_ok: bool, epoch: float) -> Plan:
    plan = Plan()

    def condemnable(name: str) -> bool:
        return fresh_ok or (epoch > 0 and 0 < listing[name].mtime <= epoch)

    missing_live: list[str] = []
    live = live_per_pack(sets)
    for name, (live_n, live_bytes) in live.items():
        if name not in listing:
            if live_n:
                missing_live.append(f"{pack_key(name)} ({live_n} blobs in use)")
            else:
                plan.dropped.append(name)
            continue
        size = listing[name].size
        unused = live_n == 0 or (size - live_bytes - header_bound(live_n)
                                 > max_unused * size)
        if unused and not condemnable(name):
            plan.deferred += 1
            plan.keep.append(name)
        elif live_n == 0:
            plan.delete.append(name)
        elif unused:
            plan.repack.append(name)
            plan.live_bytes[name] = live_bytes + header_bound(live_n)
        else:
            plan.keep.append(name)
    if missing_live:
        raise IntegrityError(f"{len(missing_live)} pack(s) missing but still in use: "
                             f"{', '.join(missing_live[:3])}; gc stopped before "
                             "changing anything: run `casbackup verify` and "
                             "`casbackup repair`")
    for name in listing:
        if name in live or name in cond_all:
            continue
        if condemnable(name):
            plan.orphans.append(name)
        else:
            plan.orphans_kept += 1
    return plan
