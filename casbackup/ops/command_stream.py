"""A command's standard output as a stream that fails instead of ending short.

``CommandStream`` runs ``sh -c COMMAND`` and reads its stdout. The stream reports EOF
only after the command exited with status 0: if it exits with another status (or is
killed), the read that would have been EOF raises ``CommandFailed`` naming the status
and the last line of its stderr. Fed to ``backup`` as ``stdin``, a failed ``pg_dump``
therefore aborts the backup before its snapshot: a truncated dump is never committed.

Invariants: stderr is drained by a thread (a chatty command cannot block on a full pipe)
and only its last ``STDERR_TAIL`` bytes are kept; leaving the ``with`` block kills a
command that is still running (with its process group) and reaps it.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import threading
from types import TracebackType
from typing import cast

from ..errors import CasError

STDERR_TAIL = 2048


class CommandFailed(CasError):
    """The command whose output was being saved did not exit with status 0."""


class CommandStream(io.RawIOBase):
    """Use as ``with CommandStream(cmd) as raw: backup(..., stdin=raw.buffered())``."""

    def __init__(self, command: str, *, env: dict[str, str] | None = None) -> None:
        super().__init__()
        self.command = command
        try:
            self.proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=env, start_new_session=True)  # fmt: skip
        except OSError as e:
            raise CommandFailed(f"cannot run the dump command: {e.strerror or e}") from e
        self._tail = b""
        self._drain = threading.Thread(target=self._read_stderr, daemon=True, name="cmd-err")
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read(4096), b""):  # type: ignore[union-attr]
            self._tail = (self._tail + chunk)[-STDERR_TAIL:]

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        stdout = cast(io.BufferedReader, self.proc.stdout)
        n = stdout.readinto(buf)
        if n:
            return n
        code = self.proc.wait()
        self._drain.join(5)
        if code != 0:
            raise CommandFailed(f"the dump command {self._what(code)}; nothing was committed"
                                + (f": {self.last_error()}" if self.last_error() else ""))
        return 0

    def buffered(self) -> io.BufferedReader:
        return io.BufferedReader(self, 1 << 20)

    def last_error(self) -> str:
        lines = self._tail.decode(errors="replace").strip().splitlines()
        return lines[-1][:200] if lines else ""

    @staticmethod
    def _what(code: int) -> str:
        return f"exited with status {code}" if code > 0 else f"was killed by signal {-code}"

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self._drain.join(5)
        super().__exit__(t, e, tb)
