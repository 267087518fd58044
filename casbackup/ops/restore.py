"""restore: recreate a snapshot's tree (or part of it) under a target directory.

This module is the orchestration, as restic's restorer: resolve the snapshot, refuse a
bad target, then under a shared lock plan (``restore_plan``: walk the trees once, check
every node, select), survey an existing target (``restore_existing``), plan the blobs
(``restore_blobs``: each pack fetched once), and hand it to the writer
(``restore_write``: create, fill, metadata via ``restore_meta``, ``--delete``,
directories' metadata last, ``--verify``). ``restore_fs`` is the fd-relative filesystem
layer all of them use.

Invariants:
- Nothing is written before every node is checked and every needed blob is found in
  the index; ``--dry-run`` writes nothing at all (the survey and plan alone).
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
  goes, ``restore:before-delete``, ``restore:before-metadata``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import UsageError
from ..faults import crash_point
from ..model.snapshot import Snapshot
from ..model.tree import DIR, FILE, SOCKET
from ..source.fs import raise_fd_limit
from ..store import Store
from ..store.locks import shared_lock
from .observer import NULL, Observer
from .restore_blobs import Plan, fill_plan
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
from .restore_plan import Item, Selection, check_links, link_plan, select, walk
from .restore_write import Restorer, RestoreResult
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

    def below(p: bytes) -> bool:
        return any(p == t or p.startswith(t + b"/") for t in tops)
    return below


def plan_items(store: Store, snap: Snapshot, sub: str | None, strip: int,
               ) -> tuple[list[Item], bool]:
    """The entries to restore: the snapshot's tree, or the subtree (or one entry) at SUB
    (``SNAP:PATH``), with STRIP leading components dropped; and whether the target's root
    is at or below a backed-up path."""
    below = _below(snap.paths)
    if sub is None or sub.strip("/") == "":
        return walk(store, snap.tree, strip=strip, below=below)
    loc = locate(store.load_tree, snap, sub)
    if loc.tree is not None:
        return walk(store, loc.tree, base=loc.path, strip=strip, below=below)
    assert loc.node is not None
    if strip:
        raise UsageError(f"--strip-components does not apply to the one entry {sub}")
    return [Item(loc.node.name, loc.node, own=below(loc.path))], False


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
        items, own_root = plan_items(store, snap, sub, strip_components)
        check_links(items)
        items, sel = select(items, include or [], exclude or [])
        link_plan(items)
        sv = _survey(store, tgt, items, overwrite or ALWAYS, sel,
                     (lambda d: own_root if d == ROOT else items[d].own) if delete else None,
                     exists)
        plan, slots, short = fill_plan(store, items, sv)  # a missing blob: nothing written
        res = RestoreResult(snap)
        _count(res, items, sv, plan)
        if dry_run:
            _report(items, sv, tgt, on_action)
            res.deleted = len(sv.extra)
            return res
        os.makedirs(tgt, exist_ok=True)
        r = Restorer(store, tgt, items, observer, res, overwrite, sv)
        for i, msg in short:
            r.warn(i, msg)
        observer.start("restore", total_bytes=res.bytes_planned,
                       total_files=sum(1 for it in items if it.node.type == FILE))
        try:
            r.create_and_fill(plan, slots, workers or store.parallel_reads())
            crash_point("restore:before-delete")
            r.delete_extra()
            crash_point("restore:before-metadata")
            r.dir_metadata()
            if verify:
                r.verify()
        finally:
            r.close()
            observer.finish()
        return res


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


def _count(res: RestoreResult, items: list[Item], sv: Survey, plan: Plan) -> None:
    for i, it in enumerate(items):
        n = it.node
        if n.type == DIR:
            continue
        res.total_files += 1
        res.total_bytes += n.size if n.type == FILE else 0
        v = sv.verdict[i]
        if v == SKIP:
            res.skipped += 1
        elif v == UNCHANGED:
            res.unchanged += 1
    res.bytes_planned = sum(e.raw_length * len(uses) for blobs in plan.values()
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
