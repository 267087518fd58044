"""Settings read from the environment: one parse of an integer variable for every module
that takes one (``CASBACKUP_RETRIES`` in backends/, ``CASBACKUP_SAVE_PROCS`` in ops/).

Invariant: a variable unset or blank is the caller's default (``None``); anything else
is an integer of at least ``minimum`` or a ``UsageError`` of one line naming the variable,
what it must be and the value given -- never a default taken silently.
"""

from __future__ import annotations

import os

from .errors import UsageError


def env_int(name: str, *, minimum: int, rule: str) -> int | None:
    """The integer in ``$NAME`` (surrounding blanks ignored), None when it is unset or
    blank. RULE says what it must be, for the message: ``"NAME must be RULE, not 'x'"``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise UsageError(f"{name} must be {rule}, not {raw!r}") from None
    if n < minimum:
        raise UsageError(f"{name} must be {rule}, not {raw!r}")
    return n
