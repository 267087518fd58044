"""The master key and its passphrase-wrapped key objects (``keys/<id>``).

Invariants:
- A master key is 32 bytes of encryption key, 32 bytes of id key and a 64-bit chunker
  seed, all random at ``init``. It never changes for the life of a store (a passphrase
  change rewraps it), so BlobIds and chunk boundaries stay stable.
- A key object is plaintext msgpack ``{version, kdf, n, r, p, salt, cipher, wrapped,
  created, hostname, username}``; ``wrapped`` is the master key sealed with AES-256-GCM
  under scrypt(passphrase, salt). A wrong passphrase fails the tag check and is reported
  as ``WrongPassword`` — never as a damaged store.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from getpass import getuser

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .. import serde
from ..errors import IntegrityError, WrongPassword
from .aead import Aead

KEY_VERSION = 1
# scrypt cost: 2**15 * 8 * 128 B = 32 MiB of memory, ~0.1 s on these machines.
DEFAULT_SCRYPT_N = 2**15
_AD = b"casbackup-key-v1"


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
        return cls(d["enc_key"], d["id_key"], int(d["chunker_seed"]))


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def wrap(master: MasterKey, passphrase: str, *, n: int = DEFAULT_SCRYPT_N) -> bytes:
    """Return the bytes of a new key object holding ``master`` under ``passphrase``."""
    salt = os.urandom(32)
    r, p = 8, 1
    wrapped = Aead("aes-256-gcm", _kek(passphrase, salt, n, r, p)).seal(master.to_bytes(), _AD)
    return serde.pack(
        {
            "version": KEY_VERSION,
            "kdf": "scrypt",
            "n": n,
            "r": r,
            "p": p,
            "salt": salt,
            "cipher": "aes-256-gcm",
            "wrapped": wrapped,
            "created": time.time(),
            "hostname": socket.gethostname(),
            "username": _username(),
        }
    )


def describe(data: bytes) -> dict[str, object]:
    """The plaintext fields of a key object (for ``key list``), without the wrapped key."""
    d = serde.unpack(data, "key object")
    if not isinstance(d, dict):
        raise IntegrityError("key object is not a map")
    return {k: v for k, v in d.items() if k not in ("wrapped", "salt")}


def unwrap(data: bytes, passphrase: str) -> MasterKey:
    d = serde.unpack(data, "key object")
    if not isinstance(d, dict) or d.get("kdf") != "scrypt":
        raise IntegrityError("key object has an unknown format")
    kek = _kek(passphrase, d["salt"], int(d["n"]), int(d["r"]), int(d["p"]))
    try:
        plain = Aead(d["cipher"], kek).open(d["wrapped"], _AD)
    except IntegrityError:
        raise WrongPassword("wrong password or no key found for it") from None
    return MasterKey.from_bytes(plain)


def _username() -> str:
    try:
        return getuser()
    except (KeyError, OSError):
        return str(os.getuid())
