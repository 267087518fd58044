"""The store's ``config`` object: plaintext msgpack written once with an exclusive put.

Invariants:
- ``format_version`` is checked on open; a store of a newer version is refused with a
  clear message, never half-read.
- Algorithms are recorded by name (chunker, hash, compression, cipher) and resolved
  through registries, so a later version can add algorithms without a format break.
- With ``encryption == "none"`` the id key and chunker seed live here in plaintext (ids
  are still keyed); otherwise they live only inside the wrapped master key.
- ``decode`` turns any bytes into a ``StoreConfig``, ``StoreNotFound`` (not a casbackup
  config at all) or ``IntegrityError`` naming ``config``: every field is type- and
  range-checked with the same bounds ``init`` enforces (``param_problem``), so a damaged
  or crafted config cannot make a store unusable or crash a command.
- The config is not authenticated by itself: on an encrypted store the key objects carry
  a MAC of its bytes (``crypto.keys.config_binding``), checked by ``Store.open``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from .. import serde
from ..chunking import ChunkerParams
from ..crypto.aead import cipher_names
from ..errors import IntegrityError, StoreNotFound
from ..fields import is_bytes, is_hex, is_int

FORMAT_VERSION = 1
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
COMPRESSION_LEVELS = (1, 22)  # zstd's levels (zstandard.MAX_COMPRESSION_LEVEL)
# what Store.create accepts (`init --pack-size` is in whole MiB: 1..1024 there; tests use
# small packs), and what a stored config may say: earlier casbackup and
# tests/data/frozen-v1 wrote smaller packs, and anything from 4 KiB to 4 GiB reads safely
PACK_SIZES = (4 << 10, 1 << 30)
PACK_SIZES_READ = (4 << 10, 4 << 30)
# pyfastcdc's documented ranges
CHUNK_MIN_SIZES, CHUNK_AVG_SIZES, CHUNK_MAX_SIZES = (64, 1 << 20), (256, 4 << 20), (1024, 16 << 20)


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
        version = m["format_version"]
        if version != FORMAT_VERSION:
            shown = version if is_int(version, 0, 2**32) else "(unreadable)"
            raise IntegrityError(
                f"store format version {shown} is not supported by this "
                f"casbackup (supports {FORMAT_VERSION}); upgrade casbackup"
            )
        problem, config = _decode_fields(m)
        if config is None:
            raise IntegrityError(f"config is damaged: {problem}")
        return config

    def with_seed(self, seed: int) -> StoreConfig:
        return replace(self, chunker=replace(self.chunker, seed=seed))


def param_problem(compression_level: object, pack_size: object, algorithm: object,
                  min_size: object, avg_size: object, max_size: object,
                  pack_sizes: tuple[int, int] = PACK_SIZES) -> str | None:
    """Why these store parameters are refused (one line), or None when they are sane.
    ``pack_sizes``: the allowed range (``init``'s, or the wider ``PACK_SIZES_READ``)."""
    if not is_int(compression_level, *COMPRESSION_LEVELS):
        return (f"compression level {_shown(compression_level)} is out of zstd's range "
                f"{COMPRESSION_LEVELS[0]}..{COMPRESSION_LEVELS[1]}")
    if not is_int(pack_size, *pack_sizes):
        shown = f"{pack_size / 2**20:g} MiB" if is_int(pack_size, -2**62, 2**62) else "?"
        lo, hi = (f"{b >> 10} KiB" if b < 1 << 20 else f"{b >> 20} MiB" for b in pack_sizes)
        return f"pack size {shown} is out of range ({lo}..{hi})"
    if algorithm != "fastcdc2020":
        return f"chunker {_shown(algorithm)} is unknown (fastcdc2020)"
    if not (is_int(min_size, *CHUNK_MIN_SIZES) and is_int(avg_size, *CHUNK_AVG_SIZES)
            and is_int(max_size, *CHUNK_MAX_SIZES)
            and min_size <= avg_size <= max_size):
        return (f"chunk sizes min {_shown(min_size)} avg {_shown(avg_size)} max "
                f"{_shown(max_size)} are out of range or not min <= avg <= max")
    return None


def config_problem(config: StoreConfig) -> str | None:
    """``param_problem`` of a config's parameters."""
    c = config.chunker
    return param_problem(config.compression_level, config.pack_size, c.algorithm,
                         c.min_size, c.avg_size, c.max_size)


def _decode_fields(m: dict[Any, Any]) -> tuple[str, StoreConfig | None]:
    """The config in map M, or why it is damaged."""
    encryption, ch = m.get("encryption"), m.get("chunker")
    if not is_hex(m.get("store_id"), 32):
        return "store_id is missing or not 32 hex digits", None
    if encryption != "none" and encryption not in cipher_names():
        return "encryption is missing or unknown", None
    if m.get("hash") != "blake3-keyed" or m.get("compression") != "zstd":
        return "hash or compression is missing or unknown", None
    if not isinstance(ch, dict):
        return "chunker is missing", None
    seed = m.get("chunker_seed", 0) if encryption == "none" else 0
    id_key = m.get("id_key") if encryption == "none" else None
    if encryption == "none" and not (is_bytes(id_key, 32) and is_int(seed, 0, 2**64 - 1)):
        return "an unencrypted config needs id_key (32 bytes) and chunker_seed", None
    sizes = [ch.get(k) for k in ("algorithm", "min_size", "avg_size", "max_size")]
    algorithm, min_size, avg_size, max_size = sizes
    problem = param_problem(m.get("compression_level"), m.get("pack_size"), algorithm,
                            min_size, avg_size, max_size, pack_sizes=PACK_SIZES_READ)
    if problem:
        return problem, None
    params = ChunkerParams(str(ch["algorithm"]), int(ch["min_size"]), int(ch["avg_size"]),
                           int(ch["max_size"]), seed)  # checked by param_problem
    return "", StoreConfig(
        store_id=m["store_id"], encryption=encryption, chunker=params,
        compression_level=m["compression_level"], pack_size=m["pack_size"],
        hash=m["hash"], compression=m["compression"], id_key=id_key,
    )


def _shown(v: object) -> str:
    """A field value fit for a one-line message (never a Python repr of junk)."""
    if is_int(v, -2**62, 2**62):
        return str(v)
    if isinstance(v, str) and len(v) <= 40 and v.isprintable():
        return v
    return "(unreadable)"
