"""gc's mark: live BlobIds from snapshots and from writers' intents, over ``BlobSets``.

Each distinct tree is read once over all of a marker's walks (the sets' seen-tree
bitmap), for its ids only (``model.tree.tree_ids``: the one reader's validation, no
``Node`` per entry, no paths: gc needs neither). Trees are resolved through the *full*
view (indexed and condemned packs); a tree in none of it may be in an index object
written since the view was built (writers flush the index before committing): those
are read then, once each, into the full view's overlay.

Invariants: a tree of a snapshot that cannot be found or read ends gc
(``IntegrityError``) before anything is written; an intent's (its writer fails its own
check) is passed over and not remembered as marked, so a snapshot naming the same tree
still reads (and fails on) it. Data blobs are resolved in batches (``BATCH`` ids, one
vectorised lookup each); an id in no pack of full is *missing* (verify names them).
Memory: the sets' bitmaps, one pending batch, and the walker's stack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from ..errors import IntegrityError
from ..model.tree import tree_ids
from ..store import PackEntry, Store, maintainer
from ..store.locks import LockInfo
from .capabilities import Maintainer
from .gc_sets import BlobSets
from .observer import NULL, Observer

BATCH = 8192


class Marker:
    """Live BlobIds from snapshots and intents into ``sets`` (see the module docstring).
    ``objects``: the index objects the sets' table was built from."""

    def __init__(self, store: Store, sets: BlobSets, objects: Iterable[str],
                 observer: Observer = NULL) -> None:
        self.store, self.sets, self.observer = store, sets, observer
        self.mt: Maintainer = maintainer(store)
        self.missing: set[bytes] = set()
        self.marked: set[str] = set()
        self.snapshots = 0
        self.seen_objects: set[str] = set(objects)

    def _newer(self, blob: bytes) -> tuple[str, PackEntry] | None:
        """Read the index objects written since the view was built, then look again."""
        for name in self.mt.index_names():
            if name not in self.seen_objects:
                self.seen_objects.add(name)
                with contextlib.suppress(IntegrityError):  # consolidated meanwhile
                    for p in self.store.read_index_object(name):
                        self.sets.add_full(p)
        return self.sets.full_get(blob)

    def snapshots_now(self, skip: Iterable[str] = ()) -> None:
        skip = set(skip) | self.marked
        for sid in self.store.snapshot_ids():
            if sid in skip:
                continue
            snap = self.mt.load_snapshot_if_present(sid)
            if snap is None:
                continue  # forgotten meanwhile: keeping more is safe
            self.marked.add(sid)
            self.snapshots += 1
            self._walk(snap.tree, f"snapshot {sid[:8]}")

    def intents(self, locks: Iterable[LockInfo]) -> None:
        for lk in locks:
            if lk.intent is not None:
                self._walk(lk.intent, None)

    def _walk(self, root: bytes, what: str | None) -> None:
        """Mark every tree and data blob below ROOT. WHAT names a snapshot: a tree of it
        that cannot be read ends gc; an intent's (WHAT None) is passed over.

        Each tree is read for its ids only (``tree_ids``: validated like every tree
        read, no ``Node`` per entry) and each distinct tree once: a subtree is marked
        (or, for an intent, put in the walk's own set) when it is queued, so it is
        never queued twice; for an intent, only a tree that was read is marked, so a
        tree it could not read is still read (and fails) when a snapshot names it."""
        sets = self.sets
        private: set[bytes] | None = set() if what is None else None
        if sets.trees_marked([root])[0] or (private is not None and root in private):
            return
        self._queue([root], private)
        stack = [root]
        pending: list[bytes] = []
        while stack:
            content, subs = self._read(stack.pop(), what)
            if content:
                pending.extend(content)
                if len(pending) >= BATCH:
                    sets.mark_live(pending, self.missing)
                    pending = []
            if subs:
                marked = sets.trees_marked(subs)
                new = [s for s, m in zip(subs, marked, strict=True) if not m
                       and (private is None or s not in private)]
                if new:
                    new = list(dict.fromkeys(new))  # one directory listed twice
                    self._queue(new, private)
                    stack.extend(reversed(new))  # depth first, in name order
        sets.mark_live(pending, self.missing)

    def _queue(self, tids: list[bytes], private: set[bytes] | None) -> None:
        if private is None:
            self.sets.mark_trees(tids)
        else:
            private.update(tids)

    def _read(self, tid: bytes, what: str | None) -> tuple[list[bytes], list[bytes]]:
        """(content ids, subtree ids) of tree TID, marked as read; ``([], [])`` for an
        intent's tree that cannot be found or read (see ``_walk``)."""
        sets = self.sets
        loc = sets.full_get(tid) or self._newer(tid)
        if loc is None:
            if what is None:
                return [], []
            raise IntegrityError(f"tree {tid.hex()[:16]} of {what} is in no index; gc "
                                 "cannot tell what is used: run `casbackup verify`, "
                                 "then `repair`")
        pack, e = loc
        try:
            ids = tree_ids(self.store.unseal_entry(
                e, self.store.read_pack_range(pack, e.offset, e.length)), tid)
        except IntegrityError as err:
            if what is None:
                return [], []
            raise IntegrityError(f"{what}: {err}; gc stopped before changing "
                                 "anything: run `casbackup verify`") from None
        sets.mark_tree(tid)
        self.observer.progress(0, 1)
        return ids
