"""Who holds a lock: a process identity that tells another machine's live process from a
dead one on this machine (DESIGN §8).

Invariants:
- ``machine`` is /etc/machine-id (when readable) joined with a random id created once in
  the state directory (``$XDG_STATE_HOME/casbackup/machine-id``, default
  ``~/.local/state/casbackup``), so cloned images with one machine-id still differ by
  their state directory, and containers without /etc/machine-id still have an identity.
- ``same_kernel_view`` holds only when machine id, boot id and pid namespace all equal
  ours: only then can "the pid is not running" (or runs with another start time) prove a
  holder dead. Any field unknown (empty / 0) means "not the same": never dead by pid.
- Reading an identity never raises: unreadable sources give empty fields.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..whoami import username


@dataclass(frozen=True, slots=True)
class Identity:
    machine: str
    boot: str
    pidns: int
    pid: int
    pid_start: int
    hostname: str
    username: str

    def same_kernel_view(self, other: Identity) -> bool:
        return bool(self.machine and self.boot and self.pidns
                    and (self.machine, self.boot, self.pidns)
                    == (other.machine, other.boot, other.pidns))


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return Path(base) / "casbackup"


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _state_machine_id() -> str:
    path = state_dir() / "machine-id"
    got = _read(str(path))
    if got:
        return got
    new = secrets.token_hex(16)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"machine-id.{os.getpid()}.tmp")
        tmp.write_text(new + "\n", encoding="ascii")
        try:
            os.link(tmp, path)  # exclusive: a racing process's id wins, we read it back
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return _read(str(path)) or new
    except OSError:
        return ""  # no writable state dir: identity by /etc/machine-id alone


def pid_start(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), 0 if unknown."""
    raw = _read(f"/proc/{pid}/stat")
    try:
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return 0


def pid_alive(pid: int, start: int) -> bool:
    """Whether ``pid`` runs in our pid namespace and (when ``start`` is known) is the same
    process, not a later one that reused the number. A number that is no pid (a crafted
    lock object: 0 and negatives name process groups to kill(2), 2**31 and up overflow)
    is never provably gone."""
    if not 0 < pid < 2**31:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not (start and pid_start(pid) not in (0, start))


def _pidns() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


@cache
def _machine() -> str:
    etc = _read("/etc/machine-id")
    mine = _state_machine_id()
    return f"{etc}-{mine}" if etc and mine else etc or mine


_assumed = threading.local()


def assume(who: Identity | None) -> None:
    """For tests: make ``current()`` return ``who`` in this thread (None: the truth)."""
    _assumed.value = who


def current() -> Identity:
    who: Identity | None = getattr(_assumed, "value", None)
    if who is not None:
        return who
    pid = os.getpid()  # not cached: a forked child is another process
    return Identity(_machine(), _read("/proc/sys/kernel/random/boot_id"), _pidns(), pid,
                    pid_start(pid), socket.gethostname(), username())
