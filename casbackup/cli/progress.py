"""Render an ops Observer: a progress bar on a TTY, ``status`` JSON lines with ``--json``,
silence otherwise (and with -q: no bar, no status lines).

The bar shows percent, files done/total, bytes done/total, rate, ETA and the error count,
in IEC units (KiB, MiB: ``common.human_bytes``, the unit of every summary). A ``status``
JSON line carries the same numbers under restic's names (``percent_done``, ``files_done``,
``total_files``, ``bytes_done``, ``total_bytes``, ``seconds_elapsed``,
``seconds_remaining``, ``error_count``, ``current_files``).

Invariants:
- Rendering never raises into the operation and never slows the byte path: bar updates
  are coalesced by rich's refresh rate; status lines are written at most once a second,
  and once more when the operation finishes, so even a short run emits one.
- Nothing garbles the bar: every line printed while it is live (warnings, retries, -v
  file lines) goes through ``notice``/``listing``, which print above it.
- Warnings go to stderr, one line each, and with ``--json`` also as ``error`` lines
  (restic's shape: ``error.message``, ``during``, ``item``) on stdout.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ..ops.observer import Observer
from . import output
from .escape import escape, escape_diagnostic, shown

if TYPE_CHECKING:  # rich is imported only when a bar is drawn (~25 ms of startup)
    from rich.progress import Progress, TaskID

    from ..store import RetryEvent


QUIET = False  # -q of the command being run (``common.store_command`` sets it)
_active: list[CliObserver] = []  # observers whose bar is live (at most one is drawn)
_active_lock = threading.Lock()


def notice(line: str) -> None:
    """Print a diagnostic line on stderr, escaped (``escape_diagnostic``), above a live bar if there
    is one."""
    line = escape_diagnostic(line)
    with _active_lock:
        bar = _active[-1]._progress if _active else None
    try:
        if bar is not None:
            bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not fail the operation


def retry_line(ev: RetryEvent) -> None:
    """One line per backend retry: the store, why, how long until which try."""
    if output.JSON:
        output.emit("retry", {"store": ev.store, "reason": ev.reason,
                              "delay_seconds": round(ev.delay, 3), "attempt": ev.attempt,
                              "attempts": ev.attempts})
    notice(f"casbackup: retrying {ev.store} in {ev.delay:.1f} s (try {ev.attempt} of "
           f"{ev.attempts}): {ev.reason}")


def _listing(line: str, bar: Progress | None) -> None:
    """A -v line on stdout, escaped, above the bar when one is drawn (it is on stderr)."""
    line = escape(line)
    if bar is not None:
        bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
    else:
        sys.stdout.write(line + "\n")


def _eta(done: int, total: int, elapsed: float) -> float | None:
    if total <= 0 or done <= 0 or done >= total or elapsed <= 0:
        return 0.0 if total > 0 and done >= total else None
    return elapsed * (total - done) / done


class CliObserver(Observer):
    def __init__(self, json_lines: bool = False, tty: bool | None = None, *,
                 verbose: int = 0, quiet: bool | None = None) -> None:
        quiet = QUIET if quiet is None else quiet
        self.json = json_lines
        self.tty = not quiet and not json_lines and (
            sys.stderr.isatty() if tty is None else tty)
        self.quiet = quiet
        self.verbose = verbose
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._bytes = 0
        self._files = 0
        self._total_bytes = 0
        self._total_files = 0
        self._errors = 0
        self._current: str | None = None
        self._started = time.monotonic()
        self._last = 0.0
        self._what = ""
        self._unit = "files"
        self.warnings: list[str] = []

    # -- the numbers, shared by the bar and the status lines ---------------------------
    def status(self) -> dict[str, Any]:
        """The current progress under restic's status-line names."""
        elapsed = time.monotonic() - self._started
        tb, tf = self._total_bytes, self._total_files
        if tb:
            pct, eta = min(1.0, self._bytes / tb), _eta(self._bytes, tb, elapsed)
        elif tf:
            pct, eta = min(1.0, self._files / tf), _eta(self._files, tf, elapsed)
        else:
            pct, eta = 0.0, None
        out: dict[str, Any] = {
            "action": self._what, "seconds_elapsed": round(elapsed, 3),
            "percent_done": round(pct, 4), "total_files": tf, "files_done": self._files,
            "total_bytes": tb, "bytes_done": self._bytes, "error_count": self._errors,
            "current_files": [self._current] if self._current else [],
        }
        if eta is not None:
            out["seconds_remaining"] = round(eta, 3)
        return out

    def _line(self) -> str:
        from .common import human_bytes

        s = self.status()
        files = f"{s['files_done']}/{s['total_files']}" if s["total_files"] else str(
            s["files_done"])
        size = (f"{human_bytes(s['bytes_done'])}/{human_bytes(s['total_bytes'])}"
                if s["total_bytes"] else human_bytes(s["bytes_done"]))
        rate = s["bytes_done"] / s["seconds_elapsed"] if s["seconds_elapsed"] > 0 else 0.0
        eta = s.get("seconds_remaining")
        parts = [f"{s['percent_done'] * 100:5.1f}%" if s["total_bytes"] or s["total_files"]
                 else "  ...", f"{files} {self._unit}", size, f"{human_bytes(rate)}/s",
                 f"ETA {_clock(eta)}" if eta is not None else "ETA -:--"]
        if self._errors:
            parts.append(f"{self._errors} error{'s' if self._errors != 1 else ''}")
        return "  ".join(parts)

    # -- Observer ----------------------------------------------------------------------
    def start(self, what: str, total_bytes: int | None = None,
              total_files: int | None = None, unit: str = "files") -> None:
        with self._lock:
            if self._what:  # a later phase (gc: mark, then repack): its own numbers
                self._total_bytes = self._total_files = 0
            # before the first phase, totals may have come first (the prefetcher): kept
            self._what, self._unit = what, unit
            self._started = time.monotonic()
            self._bytes = self._files = 0
            self._current = None
            if total_bytes is not None:
                self._total_bytes = total_bytes
            if total_files is not None:
                self._total_files = total_files
        if self.tty:
            try:
                self._start_bar(what)
            except Exception:  # a terminal rich cannot draw on: no bar, not a failure
                self._progress = None

    def _start_bar(self, what: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        observer = self

        class Numbers(ProgressColumn):
            """The numbers, formatted only when rich redraws (4 times a second), never
            on the byte path."""

            def render(self, task: object) -> Text:
                return Text(observer._line())

        self._progress = Progress(
            TextColumn(f"[bold]{what}"), BarColumn(bar_width=24), Numbers(),
            console=Console(stderr=True), transient=True, refresh_per_second=4,
        )
        self._task = self._progress.add_task(what, total=None)
        with _active_lock:
            _active.append(self)
        self._progress.start()

    def totals(self, total_bytes: int, total_files: int) -> None:
        with self._lock:
            self._total_bytes += total_bytes
            self._total_files += total_files
            self._tick(force=False)

    def wants_totals(self) -> bool:
        """Totals are shown by the bar and the ``--json`` status lines only."""
        return self.tty or (self.json and not self.quiet)

    def progress(self, nbytes: int, nfiles: int = 0) -> None:
        with self._lock:
            self._bytes += nbytes
            self._files += nfiles
            self._tick(force=False)

    def _tick(self, force: bool) -> None:
        """Bring the bar or the status line up to date (``self._lock`` is held)."""
        if self._progress is not None and self._task is not None:
            total = self._total_bytes or self._total_files or None
            done = self._bytes if self._total_bytes else self._files
            self._progress.update(self._task, total=total, completed=done)
        elif self.json and not self.quiet and self._what:  # totals may precede start
            now = time.monotonic()
            if force or now - self._last >= 1.0:
                self._last = now
                output.emit("status", self.status())

    def file(self, path: bytes, action: str) -> None:
        """-v lists new, changed (and restored) files, -vv unchanged ones too."""
        name = os.fsdecode(path)
        with self._lock:
            self._current = shown(name)
            if self.verbose < (2 if action == "unchanged" else 1):
                return
            if self.json:
                output.emit("verbose_status", {"action": action, "item": self._current})
            else:
                _listing(f"{action:9} {name}", self._progress)

    def listens(self, action: str) -> bool:
        """Only -v / -vv listings and --json's ``current_files`` use ``file``: with -q or a
        bare bar the backup walker makes no call per file."""
        return (self.json and not self.quiet) or self.verbose >= (
            2 if action == "unchanged" else 1)

    def warn(self, path: str, message: str) -> None:
        with self._lock:
            self._errors += 1
            self.warnings.append(f"{path}: {message}")
            if self.json:
                output.emit("error", {"error": {"message": message}, "during": self._what,
                                      "item": path})
        notice(f"casbackup: warning: {path}: {message}")

    def note(self, message: str) -> None:
        """-v shows notes on stderr (with --json: a ``verbose_status`` line)."""
        if self.verbose < 1:
            return
        if self.json:
            output.emit("verbose_status", {"action": "note", "item": "", "message": message})
        else:
            notice(f"casbackup: {message}")

    def finish(self) -> None:
        with self._lock:
            if self.json and not self.quiet and self._what:
                self._tick(force=True)  # the last numbers: even a short run has a line
        bar = self._progress
        if bar is not None:
            self._progress = None
            with _active_lock:
                if self in _active:
                    _active.remove(self)
            bar.stop()


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
