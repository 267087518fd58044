"""The master key and its passphrase-wrapped key objects (``keys/<id>``).

Invariants:
- A master key is 32 bytes of encryption key, 32 bytes of id key and a 64-bit chunker
  seed, all random at ``init``. It never changes for the life of a store (a passphrase
  change rewraps it), so BlobIds and chunk boundaries stay stable.
- A key object is plaintext msgpack ``{version, kdf, n, r, p, salt, cipher, wrapped,
  created, hostname, username}`` and, from version 2, ``store_id`` and ``binding``;
  ``wrapped`` is the master key sealed with AES-256-GCM under scrypt(passphrase, salt).
  A wrong passphrase fails the tag check and is reported as ``WrongPassword`` — never
  as a damaged store.
- ``binding`` is a MAC, keyed from the master key, over the store id and the BLAKE3 of
  the store's ``config`` bytes (``config_binding``): only a holder of the master key can
  make one, and any holder can check one, so a replaced config or a key object of
  another store is detected by whoever opens the store (docs/design.md §4).
- ``parse`` turns any bytes into a ``KeyObject`` or an ``IntegrityError``; scrypt
  parameters out of ``check_kdf``'s bounds (memory above 1 GiB, ...) are refused before
  any derivation, so a crafted key object cannot exhaust memory or time.
"""

from __future__ import annotations

import hmac
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import blake3
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .. import serde
from ..errors import IntegrityError, WrongPassword
from ..fields import is_bytes, is_hex, is_int
from ..whoami import username
from .aead import OVERHEAD, Aead, cipher_names

KEY_VERSION = 2  # 1: no store_id / binding (read, never written)
# scrypt cost: 2**15 * 8 * 128 B = 32 MiB of memory, ~0.1 s on these machines.
DEFAULT_SCRYPT_N = 2**15
MAX_SCRYPT_MEMORY = 1 << 30  # 128 * r * n bytes
MAX_SCRYPT_WORK = 4 << 30  # 128 * r * n * p: a planted key costs a few seconds at most
MAX_SCRYPT_P = 16
MAX_SCRYPT_R = 64
SALT_SIZES = range(16, 65)
_MAX_WRAPPED = 4096  # a wrapped master key is ~120 bytes
_AD = b"casbackup-key-v1"
_BINDING_CONTEXT = "casbackup 2026-12-01 config binding v1"


@dataclass(frozen=True, slots=True)
class MasterKey:
    enc_key: bytes
    id_key: bytes
    chunker_seed: int

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(32), os.urandom(32), int.from_bytes(os.urandom(8), "little") or 1)

    def to_bytes(self) -> bytes:
        return serde.pack(
            {"enc_key": self.enc_key, "id_key": self.id_key, "chunker_seed": self.chunker_seed}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> MasterKey:
        d = serde.unpack(data, "master key")
        if not isinstance(d, dict):
            raise IntegrityError("master key is not a map")
        enc, idk, seed = d.get("enc_key"), d.get("id_key"), d.get("chunker_seed")
        if not (is_bytes(enc, 32) and is_bytes(idk, 32) and is_int(seed, 0, 2**64 - 1)):
            raise IntegrityError("master key has missing or malformed fields")
        return cls(enc, idk, seed)


@dataclass(frozen=True, slots=True)
class KeyObject:
    """The checked fields of a key object."""

    version: int
    n: int
    r: int
    p: int
    salt: bytes
    cipher: str
    wrapped: bytes
    store_id: str | None  # None: a version-1 key object (no binding)
    binding: bytes | None
    info: dict[str, Any]  # created, hostname, username (for `key list`)


def check_kdf(n: object, r: object, p: object) -> str | None:
    """Why these scrypt parameters are refused, or None when they are within bounds."""
    if not (is_int(n, 2, 2**40) and is_int(r, 1, MAX_SCRYPT_R) and is_int(p, 1, MAX_SCRYPT_P)):
        return "scrypt parameters n, r, p are missing or out of range"
    assert isinstance(n, int) and isinstance(r, int)
    if n & (n - 1):
        return f"scrypt n={n} is not a power of two"
    if 128 * r * n > MAX_SCRYPT_MEMORY:
        return f"scrypt n={n} r={r} needs {128 * r * n >> 20} MiB (at most 1024 MiB allowed)"
    if 128 * r * n * p > MAX_SCRYPT_WORK:
        return f"scrypt n={n} r={r} p={p} is too costly (at most 4 passes over 1 GiB)"
    return None


def parse(data: bytes) -> KeyObject:
    """The fields of a key object; ``IntegrityError`` for anything malformed."""
    d = serde.unpack(data, "key object")
    if not isinstance(d, dict):
        raise IntegrityError("key object is not a map")
    version = d.get("version")
    if not is_int(version, 1, KEY_VERSION) or d.get("kdf") != "scrypt":
        raise IntegrityError("key object has an unknown version or kdf")
    n, r, p, salt, cipher, wrapped = (d.get(k) for k in ("n", "r", "p", "salt", "cipher",
                                                         "wrapped"))
    why = check_kdf(n, r, p)
    if why:
        raise IntegrityError(f"key object: {why}")
    if not isinstance(salt, bytes) or len(salt) not in SALT_SIZES:
        raise IntegrityError("key object salt is missing or of a bad length")
    if cipher not in cipher_names() or not isinstance(wrapped, bytes) or not (
            OVERHEAD < len(wrapped) <= _MAX_WRAPPED):
        raise IntegrityError("key object cipher or wrapped key is malformed")
    store_id, binding = d.get("store_id"), d.get("binding")
    if version >= 2 and not (is_hex(store_id, 32) and is_bytes(binding, 32)):
        raise IntegrityError("key object store_id or binding is malformed")
    info = {k: d[k] for k, t in (("created", (int, float)), ("hostname", str),
                                 ("username", str)) if isinstance(d.get(k), t)}
    assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
    return KeyObject(version, n, r, p, salt, cipher, wrapped,
                     store_id if version >= 2 else None,
                     binding if version >= 2 else None, info)


def config_binding(master: MasterKey, store_id: str, config: bytes) -> bytes:
    """The MAC binding a store's id and ``config`` bytes to its master key."""
    mac_key = blake3.blake3(master.enc_key, derive_key_context=_BINDING_CONTEXT).digest()
    digest = blake3.blake3(config).digest()
    return blake3.blake3(serde.pack([store_id, digest]), key=mac_key).digest()


def binding_matches(master: MasterKey, tag: bytes, store_id: str, config: bytes) -> bool:
    return hmac.compare_digest(tag, config_binding(master, store_id, config))


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def wrap(master: MasterKey, passphrase: str, *, n: int = DEFAULT_SCRYPT_N,
         store_id: str | None = None, config: bytes | None = None) -> bytes:
    """Return the bytes of a new key object holding ``master`` under ``passphrase``,
    bound to the store (version 2) when ``store_id`` and ``config`` are given."""
    salt = os.urandom(32)
    r, p = 8, 1
    why = check_kdf(n, r, p)
    if why:
        raise ValueError(why)
    wrapped = Aead("aes-256-gcm", _kek(passphrase, salt, n, r, p)).seal(master.to_bytes(), _AD)
    m: dict[str, Any] = {
        "version": 1, "kdf": "scrypt", "n": n, "r": r, "p": p, "salt": salt,
        "cipher": "aes-256-gcm", "wrapped": wrapped, "created": time.time(),
        "hostname": socket.gethostname(), "username": username(),
    }
    if store_id is not None and config is not None:
        m["version"] = KEY_VERSION
        m["store_id"] = store_id
        m["binding"] = config_binding(master, store_id, config)
    return serde.pack(m)


def describe(data: bytes) -> dict[str, object]:
    """The plaintext fields of a key object (for ``key list``), without the wrapped key."""
    k = parse(data)
    return {"version": k.version, "kdf": "scrypt", "n": k.n, "r": k.r, "p": k.p,
            "cipher": k.cipher, "store_id": k.store_id, **k.info}


def unwrap(key: bytes | KeyObject, passphrase: str) -> MasterKey:
    """The master key in ``key``: ``WrongPassword`` if the passphrase does not open it,
    ``IntegrityError`` if it is malformed."""
    k = key if isinstance(key, KeyObject) else parse(key)
    kek = _kek(passphrase, k.salt, k.n, k.r, k.p)
    try:
        plain = Aead(k.cipher, kek).open(k.wrapped, _AD)
    except IntegrityError:
        raise WrongPassword("wrong password or no key found for it") from None
    return MasterKey.from_bytes(plain)


