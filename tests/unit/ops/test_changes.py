"""ChangeSet (debounce, max delay, take/restore, full-scan fallback) and Sources (which
directories an event makes dirty, excludes, ignored stores, file sources)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from watchdog.events import (
    DirMovedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileOpenedEvent,
)

from casbackup.ops.changes import ChangeSet, EventHandler, LostEvents, Sources
from casbackup.source.exclude import Excluder


def test_debounce_and_max_delay() -> None:
    c = ChangeSet()
    assert c.due_in(2, 60, time.monotonic()) is None
    c.mark({b"/a"})
    now = time.monotonic()
    assert 1.9 < (c.due_in(2, 60, now) or 0) <= 2
    assert c.due_in(2, 60, now + 2) == 0
    assert c.due_in(2, 0.5, now + 0.5) == 0  # max delay wins over a long debounce


def test_take_and_restore() -> None:
    c = ChangeSet()
    c.mark({b"/a"})
    c.mark({b"/b"})
    b = c.take()
    assert b.dirty == {b"/a", b"/b"} and b.events == 2 and b.first is not None
    assert c.due_in(0, 0, time.monotonic()) is None
    c.mark({b"/c"})
    c.restore(b)  # the backup failed: nothing is lost
    again = c.take()
    assert again.dirty == {b"/a", b"/b", b"/c"} and again.first == b.first
    c.mark_all("event queue overflow")
    c.mark({b"/d"})
    full = c.take()
    assert full.dirty is None and full.reason == "event queue overflow"
    c.restore(full)
    assert c.take().dirty is None


def test_lost_events_log_means_full_scan() -> None:
    c = ChangeSet()
    log = logging.getLogger("watchdog.test")
    h = LostEvents(c)
    log.addHandler(h)
    try:
        log.warning("Inotify queue overflowed; filesystem events were lost")
    finally:
        log.removeHandler(h)
    assert c.take().dirty is None


def test_sources_dirty_dirs(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "d").mkdir(parents=True)
    (tmp_path / "file").write_text("x")
    r = str(root).encode()
    s = Sources([r, str(tmp_path / "file").encode()],
                Excluder(["*.tmp", "/build/"]), [r + b"/store"])
    assert s.dirty_for(r + b"/d/f", False, False) == {r + b"/d"}
    assert s.dirty_for(r + b"/d", True, True) == {r, r + b"/d"}
    assert s.dirty_for(r + b"/d/x.tmp", False, False) == set()  # an excluded file changed
    assert s.dirty_for(r + b"/d/x.tmp", False, True) == {r + b"/d"}  # ... was created
    assert s.dirty_for(r + b"/build/o/x", False, True) == set()  # inside an excluded dir
    assert s.dirty_for(r + b"/build", True, True) == {r}
    assert s.dirty_for(r + b"/store/packs/ab", False, True) == set()
    assert s.dirty_for(b"/elsewhere/f", False, True) == set()
    f = str(tmp_path / "file").encode()
    assert s.dirty_for(f, False, False) == {str(tmp_path).encode()}
    assert s.dirty_for(str(tmp_path / "sibling").encode(), False, True) == set()


def test_handler_ignores_reads_and_marks_both_ends_of_moves(tmp_path: Path) -> None:
    r = str(tmp_path)
    c = ChangeSet()
    h = EventHandler(c, Sources([r.encode()], Excluder(), []))
    h.dispatch(FileOpenedEvent(f"{r}/a/f"))
    h.dispatch(FileClosedNoWriteEvent(f"{r}/a/f"))
    assert c.due_in(0, 0, time.monotonic()) is None
    h.dispatch(FileModifiedEvent(f"{r}/a/f"))
    h.dispatch(DirMovedEvent(f"{r}/a/x", f"{r}/b/y"))
    h.dispatch(FileCreatedEvent(f"{r}/c/new"))
    assert c.take().dirty == {f"{r}/{p}".encode() for p in ("a", "a/x", "b", "b/y", "c")}
