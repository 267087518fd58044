"""Who is running casbackup: the user name recorded in snapshots, key objects and locks.

Invariant: ``username()`` never raises; without a passwd entry (a container's bare uid)
it is the numeric uid, so every record still names its maker.
"""

from __future__ import annotations

import getpass
import os


def username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
