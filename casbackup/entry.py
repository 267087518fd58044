"""The ``casbackup`` command's entry point (``python -m casbackup`` too).

Invariants:
- Ctrl-C or SIGTERM at any instant of a command ends it with one line on stderr and a
  documented exit code (130 / 143), never a Python traceback: before the CLI's own
  handlers exist (``cli/signals.py``, installed first thing in ``cli.app.main``), that
  is, while the interpreter imports the CLI (~0.3 s), this module's handler answers.
  Nothing has been opened then, so it ends the process at once.
- With ``--json`` among the arguments that line is also an ``exit_error`` JSON line on
  stdout (docs/json.md), as for every other error.
- This module imports nothing of casbackup until its handlers are installed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from types import FrameType


def _early(signum: int, frame: FrameType | None) -> None:
    code, word = (143, "terminated") if signum == signal.SIGTERM else (130, "interrupted")
    message = f"{word}: the command had not started"
    os.write(2, f"casbackup: {message}\n".encode())
    if "--json" in sys.argv[1:]:
        line = {"message_type": "exit_error", "code": code, "message": message}
        os.write(1, (json.dumps(line) + "\n").encode())
    os._exit(code)


def main() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _early)
    from .cli.app import main as cli_main

    cli_main()
