"""Where a pack's bytes go while it fills: memory, or straight into the backend.

Invariants:
- ``write`` appends a sealed blob; ``size`` is the offset the next blob will have.
- ``publish`` appends the sealed header and trailer, names the pack by the BLAKE3 of all
  its bytes and makes it durable under ``packs/<ab>/<name>`` with an exclusive put (an
  existing pack of that name holds the same bytes: success). Only after ``publish``
  returns may anything name the pack (DESIGN §9.1).
- ``MemorySink`` holds the pack until ``publish`` (any backend); ``StreamSink`` writes
  each blob to a backend temp object as it comes and hashes incrementally, so a local
  store holds no pack in memory at all (backup peak RSS: no 16 MiB buffer per open or
  in-flight pack). A crash leaves at most an invisible ``.tmp-`` file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

import blake3

from ..backends.base import TempWriter
from ..crypto.codec import Codec
from ..errors import AlreadyExists
from .layout import pack_key
from .pack import PackEntry, encode_tail, finish_pack


class PackSink(Protocol):
    size: int

    def write(self, data: bytes | memoryview) -> None: ...

    def publish(self, codec: Codec, entries: list[PackEntry]) -> tuple[str, int]: ...

    def discard(self) -> None: ...


class MemorySink:
    def __init__(self, put: Callable[[str, bytes | memoryview], None]) -> None:
        self._put = put
        self._buf = bytearray()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._buf += data
        self.size = len(self._buf)

    def publish(self, codec: Codec, entries: list[PackEntry]) -> tuple[str, int]:
        name, data = finish_pack(codec, self._buf, entries)
        self._put(name, data)
        return name, len(data)

    def discard(self) -> None:
        self._buf = bytearray()


class StreamSink:
    def __init__(self, writer: TempWriter) -> None:
        self._w = writer
        self._hash = blake3.blake3()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._w.write(data)
        self._hash.update(data)
        self.size += len(data)

    def publish(self, codec: Codec, entries: list[PackEntry]) -> tuple[str, int]:
        self.write(encode_tail(codec, entries))
        name = self._hash.hexdigest()
        with contextlib.suppress(AlreadyExists):  # that name already holds these bytes
            self._w.commit(pack_key(name))
        return name, self.size

    def discard(self) -> None:
        self._w.abort()
