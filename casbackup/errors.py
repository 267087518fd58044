"""The one exception tree of casbackup, each class carrying its process exit code.

::

    CasError (exit 1)                      anything casbackup raises on purpose
    ├── UsageError (2)                     bad arguments, bad config, nonexistent source path
    ├── PartialError (3)                   finished, but some source files were unreadable
    ├── StoreNotFound (10)                 no store at the URL, or not a store
    ├── WrongPassword (11)                 no key object opens with the passphrase
    ├── Locked (12)                        a conflicting lock is held
    ├── IntegrityError (13)                damaged or missing object / blob
    ├── SnapshotNotFound (2)               unknown or ambiguous snapshot id
    └── BackendError (1)                   raised by backends, caught and translated by store/
        ├── NotFound                       key does not exist
        ├── AlreadyExists                  exclusive put of an existing key
        ├── TransientError                 worth retrying (timeouts, 5xx, dropped connections)
        └── PermanentError                 not worth retrying (auth, permissions, bad request)

Invariants: every message is one line and names the object or path concerned; secrets
(passwords, keys, credentials) never appear in a message. ``cli`` turns any ``CasError``
into ``casbackup: <message>`` on stderr and ``exit_code``.
"""

from __future__ import annotations


class CasError(Exception):
    """Base of every error casbackup raises on purpose."""

    exit_code = 1


class UsageError(CasError):
    exit_code = 2


class PartialError(CasError):
    exit_code = 3


class StoreNotFound(CasError):
    exit_code = 10


class WrongPassword(CasError):
    exit_code = 11


class Locked(CasError):
    exit_code = 12


class IntegrityError(CasError):
    exit_code = 13


class SnapshotNotFound(CasError):
    exit_code = 2


class BackendError(CasError):
    """Raised by a backend; ``key`` names the object when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NotFound(BackendError):
    pass


class AlreadyExists(BackendError):
    pass


class TransientError(BackendError):
    pass


class PermanentError(BackendError):
    pass
