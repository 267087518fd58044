"""The one exception tree of casbackup, each class carrying its process exit code.

::

    CasError (exit 1)                      anything casbackup raises on purpose
    ├── UsageError (2)                     bad arguments, bad config, nonexistent source path
    ├── PartialError (3)                   finished, but some source files were unreadable
    ├── NothingMatched (4)                 a filter, pattern or path matched nothing
    ├── StoreNotFound (10)                 no store at the URL, or not a store
    ├── Locked (11)                        a conflicting lock is held (restic: failed to lock)
    ├── WrongPassword (12)                 no key object opens with the passphrase
    ├── IntegrityError (13)                damaged or missing object / blob
    ├── SnapshotNotFound (2)               unknown or ambiguous snapshot id
    ├── Interrupted (130)                  SIGINT (Ctrl-C): the message says what is left undone
    │   └── Terminated (143)               SIGTERM, unwound the same way (locks are released)
    └── BackendError (1)                   raised by backends, caught and translated by store/
        ├── NotFound                       key does not exist
        ├── AlreadyExists                  exclusive put of an existing key
        ├── TransientError                 worth retrying (timeouts, 5xx, dropped connections)
        └── PermanentError                 not worth retrying (auth, permissions, bad request)
            └── OutOfRange                 a ranged read past the object's end (store/ makes
                                           it an IntegrityError: an index or header lied)

The numbers are restic's where restic has the meaning (0, 1, 3, 10, 11, 12, 130);
2, 4 and 13 are casbackup's own (restic uses none of them with another meaning that a
script could confuse: its 2 is a Go runtime panic, which casbackup never exits with).
README.md "Exit codes" is the same table for users.

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


class NothingMatched(CasError):
    """A filter, pattern, include or path given by the user matched nothing."""

    exit_code = 4


class StoreNotFound(CasError):
    exit_code = 10


class Locked(CasError):
    exit_code = 11


class WrongPassword(CasError):
    exit_code = 12


class IntegrityError(CasError):
    exit_code = 13


class SnapshotNotFound(CasError):
    exit_code = 2


class Interrupted(CasError):
    """The operation was stopped by SIGINT; the message names what was left undone."""

    exit_code = 130


class Terminated(Interrupted):
    exit_code = 143


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


class Unreachable(TransientError):
    """Nothing answered at the store's address (connection refused, no route): transient
    once the store has been reached, but on the very first contact a wrong URL or a
    stopped server, so ``RetryingBackend`` fails at once instead of retrying."""


class PermanentError(BackendError):
    pass


class OutOfRange(PermanentError):
    """A ranged read reaching past the end of the object (``backends.base.check_range``)."""
