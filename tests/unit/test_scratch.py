"""Scratch: reused between calls, grown by replacement, never holding more than keep."""

from __future__ import annotations

from casbackup.scratch import Scratch


def test_reuse_growth_by_replacement_and_keep_limit() -> None:
    s = Scratch(keep=1000)
    a = s.view(100)
    a[:] = b"a" * 100
    b = s.view(50)
    assert b.obj is a.obj  # reused, not reallocated
    c = s.view(600)  # grows: a new buffer replaces the old one ...
    assert c.obj is not a.obj and len(c) == 600
    assert bytes(a) == b"a" * 100  # ... and the old view is still valid
    big = s.view(5000)  # over keep: its own buffer, not kept
    assert len(big) == 5000 and big.obj is not c.obj
    assert len(s) <= 1000 and s.view(10).obj is c.obj


def test_for_thread_gives_each_thread_and_purpose_its_own() -> None:
    import threading

    from casbackup.scratch import for_thread

    mine = for_thread("read")
    assert for_thread("read") is mine and for_thread("seal") is not mine
    other: list[Scratch] = []
    t = threading.Thread(target=lambda: other.append(for_thread("read")))
    t.start()
    t.join()
    assert other[0] is not mine
