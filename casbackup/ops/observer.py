"""The progress observer: how ops report without printing.

Invariants: every method has a no-op default, may be called from worker threads, and must
not raise. ``listens(action)`` False means ``file(path, action)`` would do nothing, so a
caller may skip the call (the backup walker does, per file, for unchanged files): it is
True for any observer that overrides ``file`` unless it says otherwise.
``wants_totals()`` False likewise means ``totals`` would be thrown away, so the backup
starts no prefetch child for them (source/prefetch.py): True for any observer that
overrides ``totals`` unless it says otherwise.
``cli`` renders it (rich on a TTY, JSON lines with ``--json``); ``daemon``
turns it into metrics.
"""

from __future__ import annotations


class Observer:
    def start(self, what: str, total_bytes: int | None = None,
              total_files: int | None = None, unit: str = "files") -> None:
        """An operation begins; totals may be unknown (None). ``unit`` names what the file
        counter counts where it is not files (``packs``, ``snapshots``)."""

    def totals(self, total_bytes: int, total_files: int) -> None:
        """More work became known (a scanner finished one source): add it to the totals."""

    def progress(self, nbytes: int, nfiles: int = 0) -> None:
        """``nbytes`` more bytes / ``nfiles`` more files were processed."""

    def file(self, path: bytes, action: str) -> None:
        """A file was processed: ``action`` is ``new``, ``changed`` or ``unchanged``
        (backup), ``restored`` (restore)."""

    def listens(self, action: str) -> bool:
        """Would ``file(path, ACTION)`` do anything? (Asked once per operation.)"""
        return type(self).file is not Observer.file

    def wants_totals(self) -> bool:
        """Would ``totals`` be used (shown)? (Asked once per operation.)"""
        return type(self).totals is not Observer.totals

    def warn(self, path: str, message: str) -> None:
        """A non-fatal problem with one path (unreadable, changed while read, …)."""

    def note(self, message: str) -> None:
        """An informational line that changes nothing for the operation (shown with -v),
        e.g. an optional step skipped."""

    def finish(self) -> None:
        """The operation ended (successfully or not)."""


NULL = Observer()
