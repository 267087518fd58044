"""Filesystem events reduced to a set of dirty directories (for ``watch``).

Invariants:
- A change to an entry marks the directory holding it dirty; a change to a directory
  (created, deleted, moved, its metadata or listing changed) marks that directory too.
  A move marks the old and the new place. The archiver rescans dirty directories and
  those above them; every other directory keeps the parent snapshot's subtree.
- Opening a file, or closing it without writing, is not a change (backups read files).
- Changes below an excluded directory are ignored. Creating, deleting or moving an
  excluded entry still marks its directory, whose own mtime changed. Changes inside an
  ``ignore``d tree (a store kept under a source) are ignored.
- Whatever could hide a change — the kernel's event queue overflowing, an observer thread
  that died, an explicit rescan request — makes the set "everything" (``Batch.dirty is
  None``): the next backup is a full scan, never a missed change.
- ``take`` swaps the set out atomically when a backup starts; events that arrive during
  that backup count for the next one. A failed backup gives its batch back (``restore``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from ..source.exclude import Excluder

_NOT_CHANGES = {"opened", "closed_no_write"}
_STRUCTURAL = {"created", "deleted", "moved"}


@dataclass
class Batch:
    dirty: set[bytes] | None  # None: everything (full scan)
    events: int
    first: float | None  # monotonic time of the first change in the batch
    reason: str  # "changes", "initial", "event queue overflow", "rescan request", …


class ChangeSet:
    """Thread-safe: the observer's thread marks, the watch loop takes."""

    def __init__(self) -> None:
        self.wake = threading.Event()  # set on every change
        self._lock = threading.Lock()
        self._dirty: set[bytes] = set()
        self._full: str | None = None
        self._events = 0
        self._first: float | None = None
        self._last = 0.0

    def _touch(self, now: float) -> None:
        self._events += 1
        if self._first is None:
            self._first = now
        self._last = now

    def mark(self, dirs: Iterable[bytes]) -> None:
        now = time.monotonic()
        with self._lock:
            self._dirty.update(dirs)
            self._touch(now)
        self.wake.set()

    def mark_all(self, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._full = self._full or reason
            self._touch(now)
        self.wake.set()

    def due_in(self, debounce: float, max_delay: float, now: float) -> float | None:
        """Seconds until a backup is due (0: now), or None when nothing is pending."""
        with self._lock:
            if self._first is None:
                return None
            return max(0.0, min(self._last + debounce, self._first + max_delay) - now)

    def take(self) -> Batch:
        with self._lock:
            b = Batch(None if self._full else self._dirty, self._events, self._first,
                      self._full or "changes")
            self._dirty, self._full, self._events, self._first = set(), None, 0, None
            return b

    def restore(self, b: Batch) -> None:
        """Give back a batch whose backup failed: it is merged into what is pending."""
        with self._lock:
            if b.dirty is None:
                self._full = self._full or b.reason
            else:
                self._dirty |= b.dirty
            self._events += b.events
            if b.first is not None:
                self._first = b.first if self._first is None else min(self._first, b.first)
                self._last = max(self._last, b.first)
        self.wake.set()


class Sources:
    """Maps an event path to its source root and decides what it makes dirty."""

    def __init__(self, roots: list[bytes], excluder: Excluder, ignore: list[bytes]) -> None:
        self.roots = [(r, os.path.isdir(r)) for r in roots]
        self.excluder = excluder
        self.ignore = ignore
        self._dir_cache: dict[bytes, bool] = {}

    @staticmethod
    def under(p: bytes, root: bytes) -> bool:
        return p == root or p.startswith(root if root.endswith(b"/") else root + b"/")

    def _dir_excluded(self, rel: bytes, root: bytes) -> bool:
        path = os.path.join(root, rel)
        hit = self._dir_cache.get(path)
        if hit is None:
            if len(self._dir_cache) > 100_000:
                self._dir_cache.clear()
            hit = self._dir_cache[path] = self.excluder.excluded(rel, True, path)
        return hit

    def exclusion(self, rel: bytes, is_dir: bool, root: bytes) -> str | None:
        """``"inside"`` when an ancestor is excluded, ``"self"`` when ``rel`` (below the
        source ``root``) is, else None."""
        parts = rel.split(b"/") if rel else []
        for i in range(1, len(parts)):
            if self._dir_excluded(b"/".join(parts[:i]), root):
                return "inside"
        if rel and self.excluder.excluded(rel, is_dir, os.path.join(root, rel)):
            return "self"
        return None

    def dirty_for(self, p: bytes, is_dir: bool, structural: bool) -> set[bytes]:
        if any(self.under(p, i) for i in self.ignore):
            return set()
        hit = next(((r, d) for r, d in self.roots if self.under(p, r)), None)
        if hit is None:
            return set()
        root, root_is_dir = hit
        parent = os.path.dirname(p)
        if not root_is_dir:  # a file source: only the file itself counts
            return {parent} if p == root else set()
        rel = p[len(root):].lstrip(b"/")
        state = self.exclusion(rel, is_dir, root)
        if state == "inside":
            return set()
        if state == "self":
            return {parent} if structural else set()
        return {parent, p} if is_dir else {parent}


class EventHandler(FileSystemEventHandler):  # type: ignore[misc]
    """Turns watchdog events into ``ChangeSet.mark`` calls (on the observer's thread)."""

    def __init__(self, changes: ChangeSet, sources: Sources) -> None:
        self.changes = changes
        self.sources = sources

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _NOT_CHANGES:
            return
        structural = event.event_type in _STRUCTURAL
        dirty: set[bytes] = set()
        for p in (event.src_path, getattr(event, "dest_path", "")):
            if p:
                dirty |= self.sources.dirty_for(os.fsencode(p), event.is_directory, structural)
        if dirty:
            self.changes.mark(dirty)


class LostEvents(logging.Handler):
    """Watchdog reports a kernel queue overflow, and failures to re-add watches, only in
    its log: turn those records into "everything is dirty"."""

    def __init__(self, changes: ChangeSet) -> None:
        super().__init__(logging.WARNING)
        self.changes = changes

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "overflow" in msg.lower():
            self.changes.mark_all("event queue overflow")
        elif record.levelno >= logging.ERROR:
            self.changes.mark_all(f"watcher error: {msg}")
