"""Read the parent snapshot's trees ahead of the backup walker, on a small thread pool.

A re-backup decodes the parent's tree of every directory it enters, to compare each entry
with its node. Read by the walker one at a time, every tree costs a pack read (on a cold
page cache: a random read of the disk, in series with the walk), an AEAD open, a zstd
frame and a BLAKE3 check. Those release the GIL, so they are started on threads as soon as
the walker knows which subtrees it will enter (the DIR nodes of the parent map it just
decoded); the walker then only decodes the fetched bytes.

Invariants:
- The walker gets exactly what ``Store.load_tree_maps`` gives: the same ``get_blob``
  (every integrity check) and the same strict ``decode_maps``; an error of a fetch is
  raised to the walker when it asks for that tree, never earlier.
- Bounded: at most ``limit`` fetched-but-unused trees are held (a few hundred KiB);
  beyond that the walker reads a tree itself, as before. Trees fetched and never asked
  for (directories removed since the parent) are dropped by ``close``.
- Threads only, no fork: the daemon runs backups in threads.
- ``checked_maps`` also gives the tree's ``missing_ids`` (parent_index.py), asked in one
  index call together with every other tree already fetched of at most ``EARLY_BYTES``
  (those are decoded then and held, maps and answer, until asked for: within the same
  ``limit``); a tree whose decode fails there keeps its error for when it is asked for.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..model.tree import decode_maps
from ..store import Store
from .parent_index import Membership, missing_ids_many

_GROUP = 8  # trees per pool task: one Future per group, not per tree
# a fetched tree up to this size is decoded early, when another is asked for (its maps
# held, ~10x its bytes); a larger one stays bytes until it is asked for itself
EARLY_BYTES = 64 << 10
Checked = tuple[list[dict[str, Any]], frozenset[bytes]]  # maps, their missing ids


class TreeAhead:
    def __init__(self, store: Store, *, limit: int = 256, workers: int = 2) -> None:
        self.store = store
        self.limit = limit
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[bytes, tuple[Future[list[bytes | Exception]], int]] = {}
        self._checked: dict[bytes, Checked | Exception] = {}  # (checked_maps)

    def _fetch(self, tree_ids: list[bytes]) -> list[bytes | Exception]:
        out: list[bytes | Exception] = []
        for tid in tree_ids:
            try:
                out.append(self.store.tree_blob(tid))  # through the object cache
            except Exception as e:  # raised to the walker if it asks for this tree
                out.append(e)
        return out

    def want(self, tree_ids: list[bytes]) -> None:
        """Start fetching TREE_IDS (in the order the walker will enter them)."""
        room = self.limit - len(self._ahead) - len(self._checked)
        if room <= 0:
            return
        todo = [t for t in dict.fromkeys(tree_ids)
                if t not in self._ahead and t not in self._checked][:room]
        if not todo:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="tree-ahead")
        for i in range(0, len(todo), _GROUP):
            group = todo[i : i + _GROUP]
            fut = self._pool.submit(self._fetch, group)
            for j, tid in enumerate(group):
                self._ahead[tid] = (fut, j)

    def maps(self, tree_id: bytes) -> list[dict[str, Any]]:
        """The validated node maps of TREE_ID (fetched ahead if it was)."""
        got = self._ahead.pop(tree_id, None)
        if got is None:
            return self.store.load_tree_maps(tree_id)
        data = got[0].result()[got[1]]
        if isinstance(data, Exception):
            raise data
        return decode_maps(data, tree_id)

    def checked_maps(self, tree_id: bytes, index: Membership) -> Checked:
        """``maps(tree_id)`` and the ids they name that INDEX lacks (``missing_ids``),
        asked with those of every other tree fetched by now, in one call."""
        got = self._checked.pop(tree_id, None)
        if isinstance(got, Exception):
            raise got
        if got is not None:
            return got
        batch = [(tree_id, self.maps(tree_id))]
        for tid, (fut, j) in list(self._ahead.items()):
            if not fut.done():
                continue
            data = fut.result()[j]
            if isinstance(data, Exception) or len(data) > EARLY_BYTES:
                continue  # (an error: raised by ``maps`` when asked for)
            del self._ahead[tid]
            try:
                batch.append((tid, decode_maps(data, tid)))
            except Exception as e:  # raised when asked for, never earlier
                self._checked[tid] = e
        answers = missing_ids_many(index, [maps for _, maps in batch])
        for (tid, maps), missing in zip(batch[1:], answers[1:], strict=True):
            self._checked[tid] = (maps, missing)
        return batch[0][1], answers[0]

    def close(self) -> None:
        self._checked = {}
        ahead, self._ahead = self._ahead, {}
        for fut, _ in ahead.values():
            fut.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
