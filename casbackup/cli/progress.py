"""Render an ops Observer: a rich progress bar on a TTY, JSON lines with ``--json``,
silence otherwise (and with -q: no bar, no JSON status lines). Warnings always go to
stderr (one line each), or as JSON lines; -v lists files on stdout.

Invariant: rendering never raises into the operation and never slows the byte path:
updates are coalesced by rich's refresh rate; JSON status lines are rate-limited.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

from ..ops.observer import Observer

if TYPE_CHECKING:  # rich is imported only when a bar is drawn (~25 ms of startup)
    from rich.progress import Progress, TaskID


QUIET = False  # -q of the command being run (``common.store_command`` sets it)


class CliObserver(Observer):
    def __init__(self, json_lines: bool = False, tty: bool | None = None, *,
                 verbose: int = 0, quiet: bool | None = None) -> None:
        quiet = QUIET if quiet is None else quiet
        self.json = json_lines
        self.tty = not quiet and (sys.stderr.isatty() if tty is None else tty)
        self.quiet = quiet
        self.verbose = verbose
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._bytes = 0
        self._files = 0
        self._total_bytes = 0
        self._last = 0.0
        self._what = ""
        self.warnings: list[str] = []

    def start(
        self, what: str, total_bytes: int | None = None, total_files: int | None = None
    ) -> None:
        self._what = what
        if self.tty and not self.json:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn(f"[bold]{what}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TextColumn("{task.fields[files]} files"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            with self._lock:  # totals may have come first (the prefetcher starts early)
                total = total_bytes if total_bytes is not None else self._total_bytes or None
                self._task = self._progress.add_task(what, total=total, files=0)
            self._progress.start()

    def totals(self, total_bytes: int, total_files: int) -> None:
        with self._lock:
            self._total_bytes += total_bytes
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, total=self._total_bytes)

    def progress(self, nbytes: int, nfiles: int = 0) -> None:
        with self._lock:
            self._bytes += nbytes
            self._files += nfiles
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, completed=self._bytes, files=self._files)
            elif self.json and not self.quiet:
                now = time.monotonic()
                if now - self._last >= 1.0:
                    self._last = now
                    sys.stderr.write(
                        json.dumps(
                            {
                                "type": "status",
                                "op": self._what,
                                "bytes_done": self._bytes,
                                "files_done": self._files,
                            }
                        )
                        + "\n"
                    )

    def file(self, path: bytes, action: str) -> None:
        """-v lists new and changed files, -vv unchanged ones too (on stdout)."""
        if self.verbose < (2 if action == "unchanged" else 1):
            return
        from .common import shown
        name = shown(os.fsdecode(path))
        with self._lock:
            line = (json.dumps({"type": "verbose_status", "action": action, "item": name})
                    if self.json else f"{action:9} {name}")
            if self._progress is not None:  # above the bar, which it must not garble
                self._progress.console.print(line, markup=False, highlight=False)
            else:
                sys.stdout.write(line + "\n")

    def warn(self, path: str, message: str) -> None:
        with self._lock:
            self.warnings.append(f"{path}: {message}")
            line = (
                json.dumps({"type": "warning", "path": path, "message": message})
                if self.json
                else f"casbackup: warning: {path}: {message}"
            )
            if self._progress is not None:
                self._progress.console.print(line, markup=False, highlight=False)
            else:
                sys.stderr.write(line + "\n")

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
