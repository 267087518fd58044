"""Named crash points for the crash-safety tests (kill -9 at a chosen moment).

Invariant: inert unless ``CASBACKUP_TEST_CRASH_AT`` is set to ``<point>`` or
``<point>:<n>`` (crash on the n-th time the point is reached); then the process sends
itself SIGKILL there — the same as ``kill -9`` from outside, with no cleanup, no flush
and no lock release. Points: ``packer:after-pack``, ``packer:after-index``,
``backup:before-snapshot``, ``restore:before-metadata``, ``store:load-snapshot`` (each
snapshot object read; for the pause below) and those other modules declare in their
docstrings. ``CASBACKUP_TEST_STOP_AT`` (same syntax) sends SIGSTOP instead: the process
pauses there until the test sends SIGCONT (a suspended laptop, a stopped VM).

``CASBACKUP_TEST_PAUSE_AT=<point>`` instead stops the process there (on the main thread
only) until a signal ends it, after creating the file ``$CASBACKUP_TEST_PAUSE_FILE``: the
signal tests interrupt a command at a known moment, with its lock held.
"""

from __future__ import annotations

import os
import signal
import threading
import time

_SPECS = [(os.environ.get("CASBACKUP_TEST_CRASH_AT", ""), signal.SIGKILL),
          (os.environ.get("CASBACKUP_TEST_STOP_AT", ""), signal.SIGSTOP)]
_counts: dict[tuple[str, int], int] = {}
_lock = threading.Lock()


_PAUSE = os.environ.get("CASBACKUP_TEST_PAUSE_AT", "")


def crash_point(name: str) -> None:
    if name == _PAUSE and threading.current_thread() is threading.main_thread():
        _pause()
    for spec, sig in _SPECS:
        if not spec:
            continue
        point, _, nth = spec.rpartition(":")
        if not nth.isdigit():
            point, nth = spec, "1"
        if point != name:
            continue
        with _lock:
            key = (name, sig)
            _counts[key] = _counts.get(key, 0) + 1
            if _counts[key] == int(nth or 1) or (sig == signal.SIGKILL
                                                 and _counts[key] > int(nth or 1)):
                os.kill(os.getpid(), sig)


def _pause() -> None:
    with open(os.environ["CASBACKUP_TEST_PAUSE_FILE"], "w"):
        pass
    while True:
        time.sleep(1)  # a signal's handler raises here
