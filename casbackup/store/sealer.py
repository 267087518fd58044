"""The sealer: a store's blob ids and sealing, without the store (for save worker processes).

Invariants:
- ``Sealer.blob_id`` and ``Sealer.seal`` are the store's own ``Codec`` methods: a blob a
  worker process seals has the id and bytes format a ``Store.add_blob`` would give it.
- ``spec()`` holds the id key and the encryption key in the clear: it is handed to a
  child process over an inherited socket or pipe only, never through argv, the
  environment or a file (ops/save_pool.py). ``from_spec`` takes it back; a spec of the
  wrong shape is an ``IntegrityError``, never a sealer that seals with the wrong key.
- ``check`` is the store's own unseal (every check of ``Codec.unseal_blob``): the parent
  of a save worker holds each blob a worker sealed to the id and size it was told.
"""

from __future__ import annotations

from ..crypto.aead import OVERHEAD
from ..crypto.codec import Codec
from ..errors import IntegrityError
from ..serde import pack, unpack


class Sealer:
    OVERHEAD = OVERHEAD  # the most bytes sealing adds to a (compressed) blob: nonce and tag

    def __init__(self, codec: Codec, spec: bytes) -> None:
        self.codec = codec
        self._spec = spec

    @classmethod
    def of(cls, id_key: bytes, enc_key: bytes | None, cipher: str, level: int) -> Sealer:
        return cls(Codec(id_key, enc_key, cipher, level), pack([id_key, enc_key, cipher, level]))

    @classmethod
    def from_spec(cls, spec: bytes) -> Sealer:
        v = unpack(spec, "sealer spec")
        if not (isinstance(v, list) and len(v) == 4 and isinstance(v[0], bytes)
                and (v[1] is None or isinstance(v[1], bytes)) and isinstance(v[2], str)
                and isinstance(v[3], int)):
            raise IntegrityError("sealer spec is not [id_key, enc_key, cipher, level]")
        return cls.of(v[0], v[1], v[2], v[3])

    def spec(self) -> bytes:
        return self._spec

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return self.codec.blob_id(data)

    def seal(self, kind: str, data: bytes | memoryview) -> bytes:
        return self.codec.seal(kind, data)

    def check(self, kind: str, blob_id: bytes, sealed: bytes, size: int) -> None:
        """That SEALED unseals to SIZE bytes hashing to BLOB_ID (what a save worker says
        it sealed), else ``IntegrityError``."""
        self.codec.unseal_blob(kind, blob_id, sealed, size)
