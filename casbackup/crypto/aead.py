"""Registry of AEAD ciphers by the name stored in the store's config.

Invariants: every sealed message is ``nonce(12) ‖ ciphertext ‖ tag(16)`` with a fresh
random 96-bit nonce; associated data binds a message to its kind, so a tree blob cannot
be passed off as a data blob or a snapshot. A failed tag check is an ``IntegrityError``.
AES-256-GCM is the default: measured ≈2.9 GB/s against ChaCha20-Poly1305's ≈1.75 GB/s
on these machines (AES-NI).
"""

from __future__ import annotations

import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import IntegrityError, UsageError
from ..scratch import Scratch

NONCE = 12
TAG = 16
OVERHEAD = NONCE + TAG


class _Cipher(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes | memoryview,
                associated_data: bytes | None) -> bytes: ...

    def encrypt_into(self, nonce: bytes, data: bytes | memoryview,
                     associated_data: bytes | None, buf: memoryview) -> int: ...

    def decrypt_into(self, nonce: bytes, data: bytes | memoryview,
                     associated_data: bytes | None, buf: memoryview) -> int: ...


_CIPHERS: dict[str, type[AESGCM] | type[ChaCha20Poly1305]] = {
    "aes-256-gcm": AESGCM,
    "chacha20-poly1305": ChaCha20Poly1305,
}


class Aead:
    def __init__(self, name: str, key: bytes) -> None:
        try:
            cls = _CIPHERS[name]
        except KeyError:
            raise UsageError(f"unknown cipher {name!r}") from None
        self.name = name
        self._c: _Cipher = cls(key)

    def seal(self, data: bytes, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._c.encrypt(nonce, data, ad)

    def seal_into(self, data: memoryview, ad: bytes, out: memoryview) -> None:
        """``seal`` into OUT, which must be exactly ``len(data) + OVERHEAD`` bytes."""
        nonce = os.urandom(NONCE)
        out[:NONCE] = nonce
        self._c.encrypt_into(nonce, data, ad, out[NONCE:])

    def open(self, data: bytes | memoryview, ad: bytes) -> bytes:
        if len(data) < OVERHEAD:
            raise IntegrityError("sealed message is shorter than nonce and tag")
        mv = memoryview(data)
        try:
            return self._c.decrypt(bytes(mv[:NONCE]), mv[NONCE:], ad)  # no copy of the body
        except InvalidTag:
            raise IntegrityError("authentication failed (damaged or forged)") from None

    def open_into(self, data: bytes | memoryview, ad: bytes, scratch: Scratch) -> memoryview:
        """``open`` into SCRATCH: the plaintext as a view of it (valid until SCRATCH is
        used again). No allocation per message, so no page faults per message."""
        n = len(data) - OVERHEAD
        if n < 0:
            raise IntegrityError("sealed message is shorter than nonce and tag")
        mv = memoryview(data)
        out = scratch.view(n)
        try:
            self._c.decrypt_into(bytes(mv[:NONCE]), mv[NONCE:], ad, out)
        except InvalidTag:
            raise IntegrityError("authentication failed (damaged or forged)") from None
        return out

def cipher_names() -> list[str]:
    return sorted(_CIPHERS)
