"""verify: prove a store intact, or name every problem and what it affects.

Checks, in order:
1. every index object reads, hashes to its name and decodes;
2. every pack the index names exists with the size the index records;
3. with ``read_data`` (or a subset), every selected pack is read whole, hashed against
   its name, its header parsed and every blob unsealed and re-hashed to its BlobId —
   and compared with what the index says;
4. every snapshot reads and decodes, every tree reachable from it loads and every node
   of it passes the validator restore reads it with (``model.tree.scan_tree``; each
   malformed node is named with its tree, snapshot and path, and the rest of the tree is
   still checked), and every blob a tree references is in the index and not found
   damaged above. Trees are walked by ``treewalk.fold`` (iterative, each distinct tree
   once), so no depth of tree stops verify.

Memory (issue #12): verify holds no Python object per blob of a sound store. Each index
object is read from the store and checked by a streaming decode
(``store.check_index_object``: its bytes, not an object per entry); lookups and per-pack entries
come from the read-only columnar view (``store.blob_table``: the mapped compact index),
a pack's entries materialised only while that pack is read, and a tree's blobs looked
up in one vectorised call. A store with a damaged index object is checked from the
objects that read (those are held in memory: the exception, not the rule).

Invariants: verify never writes; it never stops at the first problem; every problem
names the object (``packs/ab/…``, ``index/…``, ``snapshots/…``) and, for damaged or
missing blobs, the snapshots and file paths that lose data. An unreferenced pack (a
crash leftover) is reported as a note, not an error: gc removes it.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import CasError, IntegrityError, UsageError
from ..ids import TREE
from ..model.tree import DIR, FILE, Tree, scan_tree
from ..store import (
    PackEntry,
    Store,
    blob_table,
    check_index_object,
    index_key,
    pack_key,
    snapshot_key,
)
from ..store.locks import shared_lock
from .capabilities import IndexView, PackReader
from .observer import NULL, Observer
from .treewalk import fold


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    affected: list[tuple[str, str]] = field(default_factory=list)  # (snapshot id, path)
    notes: list[str] = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    packs_checked: int = 0
    packs_read: int = 0
    blobs_read: int = 0
    bad_blobs: set[bytes] = field(default_factory=set)
    # packs lost whole (missing, or of the wrong size), by ordinal in the index view:
    # their blobs are bad without a set entry each (10M blobs in missing packs were
    # 1.6 GiB of ids; a pack ordinal is one int for ~1,000 blobs)
    bad_packs: set[int] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_subset(spec: str | None) -> tuple[int, int] | float | None:
    if spec is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", spec)
    if m:
        n, k = int(m.group(1)), int(m.group(2))
        if not 1 <= n <= k:
            raise UsageError(f"--read-data-subset {spec}: need 1 <= N <= M")
        return (n, k)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%", spec)
    if m and 0 < float(m.group(1)) <= 100:
        return float(m.group(1)) / 100
    raise UsageError(f"--read-data-subset {spec!r}: use N/M or P%")


def verify(
    store: Store,
    *,
    read_data: bool = False,
    subset: str | None = None,
    observer: Observer = NULL,
    workers: int = 2,
) -> VerifyReport:
    rep = VerifyReport()
    sel = parse_subset(subset)
    with shared_lock(store, "verify", read_only=True):
        table = _check_index(store, rep)
        packs = sorted(range(table.n_packs), key=lambda no: table.names[no])
        if read_data or sel is not None:
            # a pack already reported missing or truncated is not read
            chosen = [p for p in _choose(packs, sel) if p not in rep.bad_packs]
            size = table.pack_size.tolist()
            observer.start("verify", total_bytes=sum(size[p] for p in chosen),
                           total_files=len(chosen), unit="packs")
            if table.n_packs:
                table.pack_entries(0)  # the grouping by pack, built once before the threads
            # packs are read, hashed and unsealed on a few threads (all of it releases the
            # GIL); each returns its own partial report, merged here in order
            with ThreadPoolExecutor(workers, thread_name_prefix="verify") as pool:
                for p, part in zip(  # noqa: B905 (same length by construction)
                    chosen, pool.map(lambda no: _read_pack(
                        store, table.names[no], table.pack_entries(no), size[no]),
                    chosen)
                ):
                    _merge(rep, part)
                    observer.progress(size[p], 1)
            observer.finish()
        _check_snapshots(store, table, rep)
    return rep


def _check_index(store: Store, rep: VerifyReport) -> IndexView:
    """Check every index object (read from the store, hashed, decoded, then dropped) and
    every pack it names against the listing; the view of the objects that read."""
    seen: set[str] = set()
    damaged = False
    for _ in range(20):
        vanished = False
        for name in store.index_object_names():
            if name in seen:
                continue
            seen.add(name)
            try:  # the store's copy, not the cache's; streamed, not held
                check_index_object(store, name)
            except CasError as e:
                if not store.index_object_exists(name):
                    vanished = True  # consolidated meanwhile: its packs are in a newer one
                    continue
                rep.problems.append(f"{index_key(name)}: {e}")
                damaged = True
                continue
        if not vanished:
            break
    if damaged:  # only the objects that read, in memory
        store.reset_index()
        for name in sorted(seen):
            try:
                packs, _ = store.index_object(name, cached=False)
            except CasError:
                continue
            store.index.add_object(name, packs)
        store.mark_index_loaded()
    table = blob_table(store)
    on_backend = store.pack_sizes()
    for no, name in enumerate(table.names):
        rep.packs_checked += 1
        size = on_backend.get(name)
        want = int(table.pack_size[no])
        if size is None:
            lost = table.pack_count(no)
            rep.problems.append(f"{pack_key(name)}: missing ({lost} blobs lost)")
            rep.bad_packs.add(no)
        elif size != want:
            rep.problems.append(f"{pack_key(name)}: size {size}, index says {want}")
            rep.bad_packs.add(no)
    orphans = set(on_backend) - set(table.names)
    if orphans:
        rep.notes.append(
            f"{len(orphans)} pack(s) not in any index (crash leftovers; gc removes them)"
        )
    return table


def _choose(packs: list[int], sel: tuple[int, int] | float | None) -> list[int]:
    if sel is None:
        return packs
    if isinstance(sel, tuple):
        n, k = sel
        return [p for i, p in enumerate(packs) if i % k == n - 1]
    count = max(1, round(len(packs) * sel)) if packs else 0
    return random.sample(packs, count)


def _merge(rep: VerifyReport, part: VerifyReport) -> None:
    rep.problems.extend(part.problems)
    rep.bad_blobs.update(part.bad_blobs)
    rep.packs_read += part.packs_read
    rep.blobs_read += part.blobs_read


def _read_pack(reader: PackReader, name: str, indexed: list[PackEntry],
               size: int) -> VerifyReport:
    """Read one pack front to back (``stream_blobs(whole=…)``: every byte, in reads that
    reuse one buffer, so memory stays flat), hashing it against its name and unsealing
    every indexed blob, then compare its header with the index."""
    rep = VerifyReport()
    rep.packs_read += 1
    key = pack_key(name)
    entries = sorted(indexed, key=lambda e: e.offset)
    done: set[bytes] = set()
    stream = reader.stream_blobs(name, entries, whole=size)
    try:
        for blob in stream:  # the plaintext is checked, then dropped
            done.add(blob.entry.id)
            if blob.error is None:
                rep.blobs_read += 1
            else:
                rep.problems.append(f"{key}: blob {blob.entry.id.hex()[:16]}: {blob.error}")
                rep.bad_blobs.add(blob.entry.id)
        end = stream.finish()
    except CasError as err:
        rep.problems.append(f"{key}: {err}")
        rep.bad_blobs.update(e.id for e in entries if e.id not in done)
        return rep
    if not end.hash_ok:
        rep.problems.append(f"{key}: contents do not hash to its name (damaged)")
    if end.header is None:
        rep.problems.append(f"{key}: {end.header_error}")
        return rep
    header = {e.id: e for e in end.header}
    for e in entries:
        if header.get(e.id) != e:
            rep.problems.append(f"{key}: blob {e.id.hex()[:16]} header and index disagree")
    return rep


def _check_snapshots(store: Store, table: IndexView, rep: VerifyReport) -> None:
    # tree id -> paths (relative to that tree) that lose data; [] when sound. Caching per
    # tree keeps a check of many similar snapshots linear in the number of distinct trees.
    seen: dict[bytes, list[str]] = {}
    for sid in store.snapshot_ids():
        try:
            snap = store.load_snapshot(sid, cached=False)
        except CasError as e:
            rep.problems.append(f"{snapshot_key(sid)}: {e}")
            continue
        rep.snapshots += 1
        for rel in _SnapshotCheck(store, table, rep, sid).lost(snap.tree, seen):
            rep.affected.append((sid, "/" + rel))


class _Unusable(IntegrityError):
    """A tree verify does not read: missing, damaged above, or not a tree blob."""


class _SnapshotCheck:
    """The trees of one snapshot, read as restore reads them (``Tree.decode``'s
    validator): each malformed node is a problem and a lost path, and the rest of its
    tree is still checked."""

    def __init__(self, store: Store, table: IndexView, rep: VerifyReport, sid: str) -> None:
        self.store, self.table, self.rep, self.sid = store, table, rep, sid
        self.malformed: dict[bytes, list[str]] = {}  # tree -> labels of its bad nodes

    def lost(self, root: bytes, seen: dict[bytes, list[str]]) -> list[str]:
        return fold(self._load, root, self._total, seen, on_error=self._unreadable)

    def _where(self, tid: bytes) -> str:
        return f"tree {tid.hex()[:16]} (snapshot {self.sid[:8]})"

    def _load(self, tid: bytes) -> Tree:
        loc = self.store.index.get(tid)
        if loc is None or tid in self.rep.bad_blobs or (
                self.rep.bad_packs and self.table.pack_no(loc.pack) in self.rep.bad_packs):
            raise _Unusable("is " + ("damaged" if loc is not None else "missing"))
        if loc.entry.kind != TREE:
            raise _Unusable(f"is a {loc.entry.kind} blob, not a tree")
        good, bad = scan_tree(self.store.get_blob(tid), tid)
        for b in bad:
            self.rep.problems.append(f"{self._where(tid)}: node {b.label()}: {b.problem}")
        self.malformed[tid] = [b.label() for b in bad]
        return Tree.from_valid_maps(good)

    def _unreadable(self, tid: bytes, e: CasError) -> list[str]:
        text = str(e).removeprefix(f"tree {tid.hex()[:16]}: ")  # the decoder names it too
        self.rep.problems.append(f"{self._where(tid)}{' ' if isinstance(e, _Unusable) else ': '}"
                                 f"{text}")
        return [""]

    def _total(self, tid: bytes, tree: Tree, memo: Mapping[bytes, list[str]]) -> list[str]:
        rep = self.rep
        rep.trees += 1
        lost: list[str] = list(self.malformed.pop(tid, ()))
        # every blob of the tree's files looked up at once (one vectorised call)
        ids = [b for node in tree.nodes if node.type == FILE for b in node.content or ()]
        found = self.table.resolve(ids).tolist()
        absent = {b for b, p in zip(ids, found, strict=True) if p < 0}
        if rep.bad_packs:  # the blobs whose indexed copy is in a pack lost whole
            absent_or_lost = absent | {b for b, p in zip(ids, found, strict=True)
                                       if p >= 0 and self.table.pack_of(p) in rep.bad_packs}
        else:
            absent_or_lost = absent
        for node in tree.nodes:
            name = os.fsdecode(node.name)
            if node.type == DIR and node.subtree is not None:
                lost.extend(os.path.join(name, r) if r else name for r in memo[node.subtree])
            elif node.type == FILE and node.content:
                bad = [b for b in node.content if b in absent_or_lost or b in rep.bad_blobs]
                if bad:
                    lost.append(name)
                    missing = sum(1 for b in bad if b in absent)
                    if missing:
                        rep.problems.append(
                            f"{missing} blob(s) of file {name} (snapshot {self.sid[:8]}) "
                            "are not in the index"
                        )
        return lost
