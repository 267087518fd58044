"""The codec: the one place hashing, compression and AEAD combine.

Invariants:
- ``blob_id(plaintext)`` is keyed BLAKE3 with the store's id key.
- ``seal(kind, plaintext) -> sealed``: compress (tagged, see compress.py) then, when the
  store is encrypted, AEAD with associated data ``b"casbackup:" + kind``. ``unseal`` is
  its exact inverse and raises ``IntegrityError`` on any damage.
- ``unseal_blob`` also re-checks the BlobId, so a blob can never be returned under the
  wrong id.
- An object read without a length from an index (index, snapshot, pack header, lock, gc
  record) may expand on decompression to at most ``_EXPANSION[kind]`` times its sealed
  size plus ``_SLACK``: more is an ``IntegrityError`` before anything that large is
  allocated (a few KiB of zstd can claim gigabytes). The bounds are far above what
  casbackup writes: index objects and pack headers hold a random 32-byte id per entry
  (they compress less than 2:1); snapshots hold paths and names (well under 100:1). A
  tree's length from the index may be at most ``_TREE_EXPANSION`` times its sealed size
  (a tree of 100,000 alike empty files compresses about 150:1).
- All heavy work (BLAKE3, zstd, AES) runs in C/Rust and releases the GIL, so a codec is
  shared by every worker thread.
"""

from __future__ import annotations

from typing import TypeVar

import blake3

from ..errors import IntegrityError
from ..ids import (
    DATA,
    GC_RECORD,
    HEADER,
    INDEX,
    KINDS,
    LOCK,
    SNAPSHOT,
    TREE,
    blob_hasher,
    blob_id,
)
from ..scratch import Scratch
from .aead import OVERHEAD, Aead
from .compress import Compressor

# the kinds (``ids.KINDS``) are re-exported for the store's own modules and old callers
__all__ = ["Codec", "DATA", "TREE", "HEADER", "INDEX", "SNAPSHOT", "LOCK", "GC_RECORD", "KINDS"]
_AD = {k: b"casbackup:" + k.encode() for k in KINDS}
_EXPANSION = {INDEX: 8, HEADER: 8, SNAPSHOT: 256, LOCK: 64, GC_RECORD: 64}
_TREE_EXPANSION = 4096  # trees of many alike empty files compress ~150:1
_SLACK = 1 << 20
_Plain = TypeVar("_Plain", bytes, bytes | memoryview)


class Codec:
    def __init__(self, id_key: bytes, enc_key: bytes | None, cipher: str, level: int = 3) -> None:
        self.id_key = id_key
        self.encrypted = enc_key is not None
        self._aead = Aead(cipher, enc_key) if enc_key is not None else None
        self._comp = Compressor(level)

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blob_id(self.id_key, data)

    def blob_hasher(self) -> blake3.blake3:
        return blob_hasher(self.id_key)

    def seal(self, kind: str, data: bytes | memoryview) -> bytes:
        body = self._comp.compress(data)
        if self._aead is None:
            return body
        return self._aead.seal(body, _AD[kind])

    def seal_into(self, kind: str, data: bytes | memoryview, scratch: Scratch) -> memoryview:
        """``seal`` into SCRATCH: a view of the sealed bytes, valid until SCRATCH is used
        again -- for a caller that copies them at once (the packer). Tag, body and
        ciphertext are assembled in SCRATCH, not in three fresh buffers."""
        tag, body = self._comp.compress_parts(data)
        plain = len(tag) + len(body)
        if self._aead is None:
            out = scratch.view(plain)
            out[: len(tag)] = tag
            out[len(tag) :] = body
            return out
        both = scratch.view(plain + plain + OVERHEAD)  # the plaintext, then the sealed bytes
        both[: len(tag)] = tag
        both[len(tag) : plain] = body
        out = both[plain:]
        self._aead.seal_into(both[:plain], _AD[kind], out)
        return out

    def unseal(self, kind: str, data: bytes | memoryview, raw_length: int | None = None) -> bytes:
        body = self._aead.open(data, _AD[kind]) if self._aead is not None else data
        limit = (None if raw_length is not None or kind not in _EXPANSION
                 else _EXPANSION[kind] * len(body) + _SLACK)
        if kind == TREE and raw_length is not None and raw_length > _TREE_EXPANSION * len(
                body) + _SLACK:
            raise IntegrityError(f"tree blob of {len(body)} bytes claims {raw_length} "
                                 "bytes of plaintext")
        return self._checked(kind, None, self._comp.decompress(body, raw_length, limit),
                             raw_length)

    def unseal_blob(
        self, kind: str, expected: bytes, data: bytes | memoryview, raw_length: int | None = None
    ) -> bytes:
        return self._checked(kind, expected, self.unseal(kind, data, raw_length), None)

    def unseal_blob_into(self, kind: str, expected: bytes, data: bytes | memoryview,
                         raw_length: int | None, scratch: Scratch) -> bytes | memoryview:
        """``unseal_blob`` decrypting into SCRATCH: a raw body comes back as a view (of
        SCRATCH, or of DATA when the store is not encrypted; valid until that is reused),
        a zstd body as new bytes. Every check of ``unseal_blob`` is made."""
        body = self._aead.open_into(data, _AD[kind], scratch) if self._aead is not None else data
        out = self._comp.decompress_view(body, raw_length)
        return self._checked(kind, expected, out, raw_length)

    def _checked(self, kind: str, expected: bytes | None, out: _Plain,
                 raw_length: int | None) -> _Plain:
        """The checks every unseal makes of the plaintext, in one place: the length the
        index or header gives, and (for a blob) that it hashes to its BlobId."""
        if raw_length is not None and len(out) != raw_length:
            raise IntegrityError(f"{kind} blob has length {len(out)}, index says {raw_length}")
        if expected is not None and self.blob_id(out) != expected:
            raise IntegrityError(f"{kind} blob {expected.hex()[:16]} does not hash to its id")
        return out
