"""Job hooks: commands run before and after a daemon job (borgmatic's ``commands:``).

Invariants:

* Phases, in order: ``before`` (the global hooks, then the job's), the job, then
  ``after`` when it succeeded or ``on_error`` when it failed (the job's, then the
  global ones), then ``finally`` always. A ``before`` command that fails skips the
  job (and the rest of ``before``) and makes the run a failure; so does a failing
  ``after``. ``on_error`` and ``finally`` failures are warnings: the run's result stands.
* Each command runs with ``sh -c`` in a new session with stdin from /dev/null, stdout
  and stderr captured together (the last ``OUTPUT_TAIL`` bytes kept for the log), and
  the environment of the daemon plus ``CASBACKUP_JOB``, ``CASBACKUP_JOB_TYPE``,
  ``CASBACKUP_STORE``, ``CASBACKUP_HOOK`` and, after the job, ``CASBACKUP_RESULT``
  (success | partial | failure), ``CASBACKUP_SNAPSHOT``, ``CASBACKUP_ERROR`` and
  ``CASBACKUP_EXIT_CODE``. A command still running after ``timeout`` seconds is
  killed with its whole process group and counts as failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

OUTPUT_TAIL = 4096
PHASES = ("before", "after", "on_error", "finally")


@dataclass(frozen=True, slots=True)
class Hooks:
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    on_error: tuple[str, ...] = ()
    finally_: tuple[str, ...] = ()
    timeout: float = 300.0

    def commands(self, phase: str) -> tuple[str, ...]:
        return tuple(getattr(self, "finally_" if phase == "finally" else phase))


@dataclass(slots=True)
class HookRun:
    phase: str
    command: str
    exit_code: int  # -1: timed out or could not start
    duration: float
    output: str = ""
    error: str | None = None  # why it failed, one line

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_map(self) -> dict[str, object]:
        return {"phase": self.phase, "command": self.command, "exit_code": self.exit_code,
                "duration": round(self.duration, 3), "output": self.output,
                "error": self.error}  # fmt: skip


@dataclass(slots=True)
class HookLog:
    runs: list[HookRun] = field(default_factory=list)


def run_command(phase: str, command: str, env: Mapping[str, str], timeout: float) -> HookRun:
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, **env, "CASBACKUP_HOOK": phase},
                                start_new_session=True)  # fmt: skip
    except OSError as e:
        return HookRun(phase, command, -1, 0.0, error=f"cannot run: {e.strerror or e}")
    try:
        out, _ = proc.communicate(timeout=timeout)
        code, error = proc.returncode, None
        if code != 0:
            error = f"exited with status {code}" if code > 0 else f"killed by signal {-code}"
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        code, error = -1, f"timed out after {timeout:g}s (killed)"
    text = out[-OUTPUT_TAIL:].decode(errors="replace")
    return HookRun(phase, command, code, time.monotonic() - t0, text, error)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(2.0)
            return
        except subprocess.TimeoutExpired:
            continue


def run_phase(phase: str, hook_sets: list[Hooks], env: Mapping[str, str],
              log: HookLog) -> HookRun | None:
    """Run ``phase`` of every hook set in order; for ``before``/``after`` stop at the
    first failure and return it (None: all succeeded; other phases run every command)."""
    first: HookRun | None = None
    for hooks in hook_sets:
        for command in hooks.commands(phase):
            run = run_command(phase, command, env, hooks.timeout)
            log.runs.append(run)
            if not run.ok and first is None:
                first = run
                if phase in ("before", "after"):
                    return first
    return first
