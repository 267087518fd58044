"""The store's ``config`` object: plaintext msgpack written once with an exclusive put.

Invariants:
- ``format_version`` is checked on open; a store of a newer version is refused with a
  clear message, never half-read.
- Algorithms are recorded by name (chunker, hash, compression, cipher) and resolved
  through registries, so a later version can add algorithms without a format break.
- With ``encryption == "none"`` the id key and chunker seed live here in plaintext (ids
  are still keyed); otherwise they live only inside the wrapped master key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from .. import serde
from ..chunking import ChunkerParams
from ..errors import IntegrityError, StoreNotFound

FORMAT_VERSION = 1
DEFAULT_PACK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreConfig:
    store_id: str
    encryption: str  # "none" | "aes-256-gcm" | "chacha20-poly1305"
    chunker: ChunkerParams
    compression_level: int = 3
    pack_size: int = DEFAULT_PACK_SIZE
    hash: str = "blake3-keyed"
    compression: str = "zstd"
    id_key: bytes | None = None  # only when encryption == "none"
    format_version: int = FORMAT_VERSION

    @classmethod
    def new(cls, encryption: str, **kw: Any) -> StoreConfig:
        return cls(
            store_id=os.urandom(16).hex(), encryption=encryption, chunker=ChunkerParams(), **kw
        )

    @property
    def encrypted(self) -> bool:
        return self.encryption != "none"

    def encode(self) -> bytes:
        c = self.chunker
        m: dict[str, Any] = {
            "format_version": self.format_version,
            "store_id": self.store_id,
            "hash": self.hash,
            "compression": self.compression,
            "compression_level": self.compression_level,
            "encryption": self.encryption,
            "chunker": {
                "algorithm": c.algorithm,
                "min_size": c.min_size,
                "avg_size": c.avg_size,
                "max_size": c.max_size,
            },
            "pack_size": self.pack_size,
        }
        if not self.encrypted:
            m["id_key"] = self.id_key
            m["chunker_seed"] = c.seed
        return serde.pack(m)

    @classmethod
    def decode(cls, data: bytes) -> StoreConfig:
        try:
            m = serde.unpack(data, "config")
        except IntegrityError:
            raise StoreNotFound("the config object is not a casbackup config") from None
        if not isinstance(m, dict) or "format_version" not in m:
            raise StoreNotFound("the config object is not a casbackup config")
        if m["format_version"] != FORMAT_VERSION:
            raise IntegrityError(
                f"store format version {m['format_version']} is not supported by this "
                f"casbackup (supports {FORMAT_VERSION}); upgrade casbackup"
            )
        ch = m["chunker"]
        params = ChunkerParams(
            ch["algorithm"],
            ch["min_size"],
            ch["avg_size"],
            ch["max_size"],
            int(m.get("chunker_seed", 0)),
        )
        return cls(
            store_id=m["store_id"],
            encryption=m["encryption"],
            chunker=params,
            compression_level=m["compression_level"],
            pack_size=m["pack_size"],
            hash=m["hash"],
            compression=m["compression"],
            id_key=m.get("id_key"),
        )

    def with_seed(self, seed: int) -> StoreConfig:
        return replace(self, chunker=replace(self.chunker, seed=seed))
