"""restore: recreate a snapshot's tree (or part of it) under a target directory.

This module is the orchestration, as restic's restorer: resolve the snapshot, refuse a
bad target, then under a shared lock make the plan (``restore_plan.Plan``: the selected
entries as a stream from the one walker), walk it once to check it (``check``), and walk
it again cut into windows (``restore_window``: a bounded number of entries and blobs
each), and per window survey an existing target (``restore_existing``), plan the blobs
(``restore_blobs``: each pack fetched once per window) and hand it to the writer
(``restore_write``: create, fill, metadata via ``restore_meta``, ``--delete``, the
metadata of the directories the walk has left, ``--verify``). ``restore_fs`` is the
fd-relative filesystem layer all of them use.

Invariants:
- Nothing is written before every node is checked and every needed blob is found in
  the index: the checking pass reads and validates every tree of the selection and
  keeps only counts, the hard-link groups and (within ``tree_keep`` bytes) the first
  trees it decoded, so a damaged tree anywhere is an ``IntegrityError`` (exit 13) with
  the target as it was. The price is a second walk: each tree not kept is read again
  and decoded without a second validation (``restore_plan.Plan``; restic and borg write
  as they go instead, and leave a partial restore behind). With ``--delete`` or
  ``--dry-run`` (one window of the whole selection, listed anyway) the list is the one
  walk: it is checked, then written, and no tree is decoded twice. ``--dry-run`` writes
  nothing at all (the survey alone).
- Memory does not grow with the number of entries: a window holds at most
  ``restore_window.MAX_ENTRIES`` new entries (or about ``MAX_BLOBS`` blobs); between
  windows only the open directories and the hard-link groups are kept. ``--delete`` and
  ``--dry-run`` take the whole selection as one window (the survey's name sets need
  every directory's entries at once), as the plan did before it streamed.
- Nothing outside the target is touched (``restore_fs``, ``restore_write``).
- A target on a read-only filesystem is refused before anything is read (exit 2).
- The target must be empty or missing unless ``overwrite``: restore never mixes a
  snapshot into unrelated files by accident; without it an entry in the way is named.
- ``SNAP:PATH`` restores that subtree (or the one entry) at the target's root;
  ``--strip-components`` is ``ops.strip``'s, shared with ls, dump and find.
- In place (``overwrite`` a mode of ``restore_existing``): only the blobs of files that
  differ are fetched; an existing directory that merely leads to a backed-up path
  (``--target /``: ``/``, ``/home``) keeps its own metadata; ``--delete`` removes,
  after the content and before directories' metadata, what the survey found that the
  snapshot does not have, only at or below backed-up paths.
- Crash points (``faults``): ``restore:blob`` after each blob is written everywhere it
  goes, ``restore:before-delete``, ``restore:before-metadata`` (once per window, after
  its content).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from ..errors import NothingMatched, UsageError
from ..faults import crash_point
from ..model.snapshot import Snapshot
from ..model.tree import DIR, FILE, SOCKET
from ..source.fs import raise_fd_limit
from ..store import Store
from ..store.locks import shared_lock
from . import restore_window
from .observer import NULL, Observer
from .restore_blobs import Plan as BlobPlan
from .restore_blobs import fill_plan
from .restore_existing import (
    ALWAYS,
    MODES,
    NEW,
    REPLACE,
    SKIP,
    UNCHANGED,
    UPDATE,
    Survey,
    all_new,
    survey,
)
from .restore_fs import ROOT, show
from .restore_plan import KEEP_BYTES, Item, Plan, Selection
from .restore_state import RestoreResult
from .restore_window import Window, Windows, single
from .restore_write import Restorer
from .snapsel import ANY, SnapshotFilter, locate, resolve, split_ref
from .strip import check_strip

Action = Callable[[str, str, int], None]  # (path, restic action, size)
_ACTION = {NEW: "restored", REPLACE: "updated", UPDATE: "updated", UNCHANGED: "unchanged",
           SKIP: "unchanged"}


def _below(paths: list[str]) -> Callable[[bytes], bool]:
    """Whether a snapshot path is at or below one of the snapshot's backed-up PATHS."""
    tops = [os.fsencode(p).rstrip(b"/") for p in paths]
    if any(not t for t in tops):
        return lambda p: True
    exact, under = frozenset(tops), tuple(t + b"/" for t in tops)
    return lambda p: p in exact or p.startswith(under)


def plan_of(store: Store, snap: Snapshot, sub: str | None, strip: int,
            include: list[str], exclude: list[str], keep: int = KEEP_BYTES) -> Plan:
    """The entries to restore: the snapshot's tree, or the subtree (or one entry) at SUB
    (``SNAP:PATH``), with STRIP leading components dropped, as selected by the patterns
    (``Plan.own_root``: whether the target's root is at or below a backed-up path);
    KEEP: bytes of decoded trees the checking walk keeps for the writing one."""
    below = _below(snap.paths)
    if sub is None or sub.strip("/") == "":
        return Plan(store, snap.tree, strip=strip, below=below, include=include,
                    exclude=exclude, keep=keep)
    loc = locate(store.load_tree, snap, sub)
    if loc.tree is not None:
        return Plan(store, loc.tree, base=loc.path, strip=strip, below=below,
                    include=include, exclude=exclude, keep=keep)
    assert loc.node is not None
    if strip:
        raise UsageError(f"--strip-components does not apply to the one entry {sub}")
    return Plan(store, None, base=loc.path, below=below, include=include, exclude=exclude,
                one=loc.node)


def check(store: Store, plan: Plan, items: Iterable[Item] | None = None) -> tuple[int, int]:
    """The checking pass: walk every selected entry (``Plan.entries`` validates each
    node and the hard-link groups) and find every content blob in the index; nothing is
    kept but the counts and the hard-link groups seen: (files, bytes to write, a hard
    link's once) for the progress. Raises before anything is written. ITEMS: a whole
    walk of PLAN already made (the single window's list), checked instead of walking
    again.

    A blob is only looked for (``in``: the index's answer without building its
    location, ~35 % cheaper than ``lookup``); the windows' blob plans locate the blobs
    they fetch. There is no batch lookup in the index to hand a tree's ids to at once
    (``BlobTable.resolve`` is one, but building its table checks every block of every
    index file: a whole-store pass, for gc and verify)."""
    files = size = 0
    index = store.load_index()
    linked: set[tuple[int, int]] = set()  # nlink > 1 files only
    for it in plan.entries() if items is None else items:
        n = it.node
        if n.type != FILE:
            continue
        files += 1
        if n.nlink > 1:
            if (n.device, n.inode) in linked:
                continue
            linked.add((n.device, n.inode))
        size += n.size
        for bid in n.content or ():
            if bid not in index:
                index.lookup(bid)  # raises, naming it
    return files, size


def _unmatched(plan: Plan, snap_id: str, res: RestoreResult) -> None:
    """``--include`` patterns that matched nothing: ``NothingMatched`` before anything
    is written when none matched; else one warning each in ``res.unmatched`` (the CLI
    ends with exit 4 after restoring what the others matched)."""
    miss = list(plan.unmatched)
    if not miss:
        return
    if len(miss) == plan.counted:
        raise NothingMatched(f"--include {' '.join(miss)} matched nothing in snapshot "
                             f"{snap_id[:8]}; nothing restored")
    for p in miss:
        res.unmatched.append(p)
        res.warnings.append(f"--include {p} matched nothing in snapshot {snap_id[:8]}")


def restore(
    store: Store,
    ref: str,
    target: str,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    overwrite: str | None = None,  # None: the target must be empty; else one of MODES
    delete: bool = False,
    dry_run: bool = False,
    strip_components: int = 0,
    verify: bool = False,
    observer: Observer = NULL,
    workers: int | None = None,  # packs read at once; None: Store.parallel_reads()
    filt: SnapshotFilter = ANY,  # REF must name a snapshot this accepts (snapsel)
    on_action: Action | None = None,  # with dry_run: each entry's action
    window_entries: int | None = None,  # entries per window (default: restore_window's)
    window_blobs: int | None = None,  # content blobs per window
    tree_keep: int = KEEP_BYTES,  # bytes of decoded trees kept from the checking walk
) -> RestoreResult:
    if overwrite is not None and overwrite not in MODES:
        raise UsageError(f"--overwrite {overwrite}: not one of {', '.join(MODES)}")
    check_strip(strip_components)
    raise_fd_limit()
    snap_ref, sub = split_ref(ref)
    snap = resolve(store, snap_ref, filt)
    tgt = os.path.abspath(os.fsencode(target))
    exists = os.path.lexists(tgt)
    if exists:
        if not os.path.isdir(tgt):
            raise UsageError(f"restore target {show(tgt)} exists and is not a directory")
        if os.listdir(tgt):
            if overwrite is None:
                raise UsageError(f"restore target {show(tgt)} is not empty "
                                 f"(use --overwrite {'|'.join(MODES)})")
        else:
            exists = False
    if not dry_run:
        _check_writable(tgt)
    with shared_lock(store, "restore", read_only=True):
        store.load_index()
        whole = dry_run or delete  # the survey's name sets need every directory at once
        # one window of everything: its list is the one walk (no trees kept for another)
        plan = plan_of(store, snap, sub, strip_components, include or [], exclude or [],
                       0 if whole else tree_keep)
        listed = list(plan.entries()) if whole else None
        files, size = check(store, plan, listed)  # every node checked before any write
        res = RestoreResult(snap)
        _unmatched(plan, snap.id, res)
        mode = overwrite or ALWAYS
        if listed is not None:
            windows: Iterable[Window] = [single(listed)]
            stream = None
        else:
            windows = stream = Windows(plan.entries(), window_entries or restore_window.MAX_ENTRIES,
                                        window_blobs or restore_window.MAX_BLOBS)
        if not dry_run:
            os.makedirs(tgt, exist_ok=True)
            observer.start("restore", total_bytes=size, total_files=files)
        try:
            for w in windows:
                sv, bplan, slots, short = _prepare(store, tgt, w, plan, res, mode, delete,
                                                   exists)
                if dry_run:
                    _report(w.items, sv, tgt, on_action)
                    res.deleted = len(sv.extra)
                    return res
                r = Restorer(store, tgt, w.items, observer, res, overwrite, sv, w.carried)
                try:
                    for i, msg in short:
                        r.warn(i, msg)
                    r.create_and_fill(bplan, slots, workers or store.parallel_reads())
                    crash_point("restore:before-delete")
                    r.delete_extra()
                    crash_point("restore:before-metadata")
                    r.dir_metadata(w.closing)
                    if verify:
                        r.verify()
                finally:
                    r.close()
                if stream is not None:
                    stream.record(w, r)
        finally:
            if not dry_run:
                observer.finish()
        return res


def _prepare(store: Store, tgt: bytes, w: Window, plan: Plan, res: RestoreResult,
             mode: str, delete: bool, exists: bool,
             ) -> tuple[Survey, BlobPlan, list[int], list[tuple[int, str]]]:
    """Survey window W (what is carried: as an earlier window made it) and plan its
    blobs; counted into RES."""
    items = w.items
    deletable = (lambda d: plan.own_root if d == ROOT else items[d].own) if delete else None
    sv = _survey(store, tgt, items, mode, plan.selection(items), deletable, exists)
    for i, k in w.carried.items():
        if items[i].node.type == DIR:
            sv.verdict[i] = k.verdict
        else:  # a hard link's file: there, nothing to do
            sv.verdict[i] = UNCHANGED
            if k.ident is not None:
                sv.settled[i], sv.ident[i] = 1, k.ident
    bplan, slots, short = fill_plan(store, items, sv)
    _count(res, items, w.first_new, sv, bplan)
    return sv, bplan, slots, short


def _check_writable(tgt: bytes) -> None:
    """Refuse a target on a read-only filesystem before anything is read or written."""
    p = tgt
    while not os.path.lexists(p) and p != os.path.dirname(p):
        p = os.path.dirname(p)
    try:
        ro = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return  # the writes themselves will say what is wrong
    if ro:
        raise UsageError(f"restore target {show(tgt)} is on a read-only filesystem")


def _survey(store: Store, tgt: bytes, items: list[Item], mode: str, sel: Selection,
            deletable: Callable[[int], bool] | None, exists: bool) -> Survey:
    if not exists:
        return all_new(len(items))

    def lengths(ids: list[bytes]) -> list[int]:
        return [store.locate(b).entry.raw_length for b in ids]

    root = os.open(tgt, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return survey(root, items, mode, lengths, store.codec.blob_id, sel=sel,
                      deletable=deletable, hasher=store.codec.blob_hasher,
                      chunker=lambda: store.chunker)
    finally:
        os.close(root)


def _count(res: RestoreResult, items: list[Item], first: int, sv: Survey,
           plan: BlobPlan) -> None:
    for i in range(first, len(items)):
        n = items[i].node
        if n.type == DIR:
            continue
        res.total_files += 1
        res.total_bytes += n.size if n.type == FILE else 0
        v = sv.verdict[i]
        if v == SKIP:
            res.skipped += 1
        elif v == UNCHANGED:
            res.unchanged += 1
    res.bytes_planned += sum(e.raw_length * len(uses) for blobs in plan.values()
                            for e, uses in blobs.values())
    res.bytes_planned += sum(c.length for cs in sv.local.values() for c in cs)


def _report(items: list[Item], sv: Survey, tgt: bytes, on_action: Action | None) -> None:
    """--dry-run: what each entry would get, then what --delete would remove."""
    if on_action is None:
        return
    top = tgt.rstrip(b"/")
    for i, it in enumerate(items):
        if it.node.type == SOCKET:
            continue
        size = it.node.size if it.node.type == FILE else 0
        on_action(show(top + b"/" + it.path), _ACTION[sv.verdict[i]], size)
    for d, name, _, size in sv.extra:
        base = top + b"/" + items[d].path if d != ROOT else top
        on_action(show(base + b"/" + name), "deleted", size)
