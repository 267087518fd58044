"""A command whose standard output is backed up (``backup --stdin-from-command CMD``).

Invariants: the command line is split like a shell would (``shlex``) and run without one,
stdin from /dev/null, stderr passed through; its stdout is the stream to store. ``check``
(called after the stream's end, before the snapshot is written) waits for the command and
raises ``CasError`` (exit 1) unless it exited 0, so a failed dump is never committed.
Leaving the context kills a command still running (the backup failed or was
interrupted) and reaps it. Errors name the command by its first word only: its
arguments may hold secrets.
"""

from __future__ import annotations

import shlex
import subprocess
from types import TracebackType
from typing import BinaryIO

from ..errors import CasError, UsageError


class CommandSource:
    def __init__(self, command: str) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as e:
            raise UsageError(f"--stdin-from-command: cannot split the command line: {e}") from None
        if not self.argv:
            raise UsageError("--stdin-from-command: the command is empty")
        self.name = self.argv[0]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CommandSource:
        try:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE)
        except OSError as e:
            raise UsageError(f"--stdin-from-command {self.name}: {e.strerror or e}") from None
        return self

    @property
    def stdout(self) -> BinaryIO:
        assert self._proc is not None and self._proc.stdout is not None
        return self._proc.stdout  # type: ignore[return-value]

    def check(self) -> None:
        """Wait for the command; raise unless it exited 0 (nothing may be committed)."""
        assert self._proc is not None
        code = self._proc.wait()
        if code < 0:
            raise CasError(f"--stdin-from-command {self.name} was killed by signal {-code}; "
                           "no snapshot was written")
        if code:
            raise CasError(f"--stdin-from-command {self.name} exited with status {code}; "
                           "no snapshot was written")

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
