"""The Backend protocol: dumb key -> bytes storage that knows nothing about blobs.

Required semantics of every backend (the contract suite in tests/contract checks them):
- **Atomic put**: a reader sees either no object or the whole object, never a prefix.
  ``put(..., overwrite=False)`` raises ``AlreadyExists`` if the key exists (exclusive
  create where the service supports it; otherwise check-then-put, documented per backend).
- **Read-after-write**: after ``put`` returns, ``get``/``stat``/``list`` see the object.
- **Durability**: after ``put`` returns the bytes survive a crash of this process and of
  the machine (local: fsync file and directory).
- ``get(key, offset=o, length=n)`` returns exactly ``data[o:o+n]`` (``length=None``: to the
  end); a range past the end raises ``OutOfRange`` (a ``PermanentError``).
- ``list(prefix)`` yields every object whose key starts with ``prefix``, sorted by key,
  and never temporary files.
- ``delete`` of a missing key raises ``NotFound``.
- Errors: ``NotFound``, ``AlreadyExists``, ``TransientError`` (retried by
  ``backends.retry.RetryingBackend``), ``PermanentError``; never a raw OSError/botocore error.
  Messages name the key and never contain credentials.

Keys are relative, slash-separated, lowercase ASCII ``[a-z0-9_./-]``, no ``..``, no leading
slash, and no segment starting with ``TEMP_PREFIX`` (``.tmp-``, reserved for the temporary
files of file-based backends): ``validate_key`` enforces it at the boundary.
Helpers shared by the implementations: ``is_temp_name``, ``check_range``, ``list_start``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..errors import OutOfRange, PermanentError

_KEY_RE = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_.-]+)*$")

TEMP_PREFIX = ".tmp-"
"""Names of in-flight temporary files (local, SFTP); never valid keys, never listed."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float = 0.0


@dataclass(frozen=True, slots=True)
class Properties:
    """What the store may rely on: how many parallel connections pay, and whether
    ``put(overwrite=False)`` is a true atomic exclusive create."""

    connections: int = 2
    atomic_exclusive_create: bool = True
    is_local: bool = False


class Backend(Protocol):
    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None: ...

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes: ...

    def stat(self, key: str) -> ObjectInfo: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...

    def properties(self) -> Properties: ...


def validate_key(key: str) -> str:
    parts = key.split("/")
    if not _KEY_RE.match(key) or ".." in parts or any(map(is_temp_name, parts)):
        raise PermanentError(f"invalid object key {key!r}", key)
    return key


def is_temp_name(name: str) -> bool:
    """True for a path segment that names a backend's temporary file."""
    return name.startswith(TEMP_PREFIX)


def check_range(key: str, offset: int, length: int | None, size: int) -> int:
    """Validate a ranged read of an object of ``size`` bytes; return the byte count to read.

    ``offset == size`` with ``length`` None or 0 is an empty read, not an error; anything
    reaching past the end raises ``OutOfRange``, a negative one ``PermanentError``.
    """
    if offset < 0 or (length is not None and length < 0):
        raise PermanentError(f"invalid range offset={offset} length={length} for {key}", key)
    n = size - offset if length is None else length
    if offset > size or offset + n > size:
        raise OutOfRange(
            f"range offset={offset} length={length} past the end of {key} ({size} bytes)", key
        )
    return n


def list_start(prefix: str) -> tuple[str, str]:
    """Split a list prefix into (directory part, name prefix): ``packs/a`` -> (``packs``, ``a``).

    Backends that walk directories start at the directory part and keep entries whose name
    starts with the name prefix. A prefix may be any string; it is not validated as a key.
    """
    head, _, tail = prefix.rpartition("/")
    return head, tail


class TempWriter(Protocol):
    """An object being written in place (optional backend capability, see
    ``StreamingBackend``): bytes go straight to the backend, nothing is held in memory."""

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self, key: str) -> None:
        """Durably publish what was written under ``key`` with the same semantics as
        ``put(key, data, overwrite=False)`` (``AlreadyExists`` if the key exists)."""
        ...

    def abort(self) -> None:
        """Throw away what was written; the backend is as before."""
        ...


class StreamingBackend(Backend, Protocol):
    """A backend that can write an object whose name is known only at the end (a pack
    named by its hash) without the caller holding it in memory."""

    def temp_writer(self, prefix: str) -> TempWriter: ...


class ReadIntoBackend(Backend, Protocol):
    """A backend that can read a range straight into the caller's buffer (optional
    capability): a reader that scans many ranges reuses one buffer instead of faulting in
    fresh pages for every read."""

    def get_into(self, key: str, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` with exactly ``data[offset:offset + len(buf)]``; errors as ``get``."""
        ...

