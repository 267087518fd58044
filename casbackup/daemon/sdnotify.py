"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``), without libsystemd.

Invariants:

* Messages go as one datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract socket when it
  starts with ``@``); without the variable every call is a no-op returning False, so the
  daemon runs the same outside systemd. A send that fails is ignored (systemd gone, socket
  full): notifying must never stop the daemon.
* ``watchdog_interval()`` is half of ``$WATCHDOG_USEC`` (systemd's advice) when the
  variable is set and ``$WATCHDOG_PID`` is unset or names this process; else None.
"""

from __future__ import annotations

import os
import socket


def notify(*fields: str) -> bool:
    """Send ``fields`` (``READY=1``, ``STATUS=…``) as one message; True if it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall("\n".join(fields).encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or None when no watchdog is asked for."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
