"""MemoryBackend: a thread-safe dict of key -> bytes, for tests.

Invariants:
- Every operation takes one lock, so puts are atomic and exclusive creates are exact.
- Stored values are immutable ``bytes`` copies; callers cannot mutate stored objects
  through a ``bytearray``/``memoryview`` they passed to ``put``.
- ``MemoryBackend("name")`` (URL ``memory://name``) attaches to a process-global named
  space: every backend opened with the same name sees the same objects, until
  ``MemoryBackend.forget(name)``. ``MemoryBackend()`` (URL ``memory://``) is private.
- ``list`` returns a snapshot taken under the lock, sorted by key.
- Every object carries an mtime, the backend's clock at its put (``time.time`` unless a
  ``clock`` callable is given: tests move the "server" clock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import AlreadyExists, NotFound
from .base import ObjectInfo, Properties, check_range, validate_key


@dataclass
class _Space:
    lock: threading.Lock = field(default_factory=threading.Lock)
    objects: dict[str, tuple[bytes, float]] = field(default_factory=dict)


_REGISTRY: dict[str, _Space] = {}
_REGISTRY_LOCK = threading.Lock()


class MemoryBackend:
    """In-memory objects; ``name`` shares them with every other backend of that name."""

    def __init__(self, name: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.clock = clock
        if name is None:
            self._space = _Space()
        else:
            with _REGISTRY_LOCK:
                self._space = _REGISTRY.setdefault(name, _Space())

    def __repr__(self) -> str:
        return f"MemoryBackend({self.name!r})"

    @staticmethod
    def forget(name: str) -> None:
        """Drop the named space (backends still attached keep their data)."""
        with _REGISTRY_LOCK:
            _REGISTRY.pop(name, None)

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        validate_key(key)
        value = bytes(data)
        with self._space.lock:
            if not overwrite and key in self._space.objects:
                raise AlreadyExists(f"object {key} already exists", key)
            self._space.objects[key] = (value, self.clock())

    def _lookup(self, key: str) -> tuple[bytes, float]:
        validate_key(key)
        with self._space.lock:
            try:
                return self._space.objects[key]
            except KeyError:
                raise NotFound(f"object {key} not found", key) from None

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        value, _ = self._lookup(key)
        n = check_range(key, offset, length, len(value))
        if offset == 0 and n == len(value):
            return value
        return value[offset : offset + n]

    def stat(self, key: str) -> ObjectInfo:
        value, mtime = self._lookup(key)
        return ObjectInfo(key, len(value), mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._space.lock:
            items = [
                ObjectInfo(k, len(v), m)
                for k, (v, m) in self._space.objects.items()
                if k.startswith(prefix)
            ]
        items.sort(key=lambda i: i.key)
        return iter(items)

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._space.lock:
            try:
                del self._space.objects[key]
            except KeyError:
                raise NotFound(f"object {key} not found", key) from None

    def close(self) -> None:
        pass

    def properties(self) -> Properties:
        return Properties(connections=4, atomic_exclusive_create=True, is_local=True)
