"""The ``casbackup`` command's entry point (``python -m casbackup`` too).

Invariants:
- Ctrl-C or SIGTERM at any instant of a command ends it with one line on stderr and a
  documented exit code (130 / 143), never a Python traceback: before the CLI's own
  handlers exist (``cli/signals.py``, installed first thing in ``cli.app.main``), that
  is, while the interpreter imports the CLI (~0.3 s), this module's handler answers.
  Nothing has been opened then, so it ends the process at once.
- With ``--json`` among the arguments that line is also an ``exit_error`` JSON line on
  stdout (docs/json.md), as for every other error.
- This module imports nothing of casbackup until its handlers are installed, and
  ``__main__`` (``python -m``) installs them as the first thing it does. What is
  left before them is the interpreter's own start (site, runpy), where Python's default
  handler answers.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def _early(signum: int, frame: Any) -> None:
    code, word = (143, "terminated") if signum == signal.SIGTERM else (130, "interrupted")
    message = f"{word}: the command had not started"
    os.write(2, f"casbackup: {message}\n".encode())
    if "--json" in sys.argv[1:]:
        line = f'{{"message_type": "exit_error", "code": {code}, "message": "{message}"}}\n'
        os.write(1, line.encode())
    os._exit(code)


def install() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _early)


def main() -> None:
    install()  # again: a caller may have imported this module long before
    from .cli.app import main as cli_main

    cli_main()
