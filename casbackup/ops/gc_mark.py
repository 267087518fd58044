"""gc's mark: live BlobIds from snapshots and from writers' intents, over ``BlobSets``.

Each distinct tree is read once over all of a marker's walks (``treewalk.walk`` with a
``seen`` that is the sets' seen-tree bitmap). Trees are resolved through the *full*
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
from ..model.tree import Tree
from ..store import PackEntry, Store, maintainer
from ..store.locks import LockInfo
from .capabilities import Maintainer
from .gc_sets import BlobSets
from .observer import NULL, Observer
from .treewalk import walk

BATCH = 8192
_EMPTY = Tree([])


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
        that cannot be read ends gc; an intent's (WHAT None) is passed over."""
        sets = self.sets

        def load(tid: bytes) -> Tree:
            loc = sets.full_get(tid) or self._newer(tid)
            if loc is None:
                if what is None:
                    return _EMPTY
                raise IntegrityError(f"tree {tid.hex()[:16]} of {what} is in no index; gc "
                                     "cannot tell what is used: run `casbackup verify`, "
                                     "then `repair`")
            pack, e = loc
            try:
                tree = Tree.decode(self.store.unseal_entry(
                    e, self.store.read_pack_range(pack, e.offset, e.length)))
            except IntegrityError as err:
                if what is None:
                    return _EMPTY
                raise IntegrityError(f"{what}: {err}; gc stopped before changing "
                                     "anything: run `casbackup verify`") from None
            sets.mark_tree(tid)
            self.observer.progress(0, 1)
            return tree

        # a snapshot's walk shares the marked trees; an intent's adds to a set of its
        # own, so a tree it could not read is still read (and fails) when a snapshot
        # names it
        seen = sets.seen_trees(private=what is None)
        pending: list[bytes] = []
        for e in walk(load, root, once=True, seen=seen):
            if e.node.content:
                pending.extend(e.node.content)
                if len(pending) >= BATCH:
                    sets.mark_live(pending, self.missing)
                    pending = []
        sets.mark_live(pending, self.missing)
