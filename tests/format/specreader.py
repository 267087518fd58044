"""A reader of store format v1 written from docs/design.md alone, sharing no code with
casbackup: msgpack, zstandard, blake3 and cryptography only.

Invariants: it reads a local store directory and never writes; it checks what the spec
promises a reader may rely on (object names are the BLAKE3 of their bytes, the pack
trailer, the sealed body, keyed BlobIds, raw lengths) and raises ``AssertionError``
naming the object when a promise does not hold. If casbackup and this reader disagree
about a frozen store, one of them departed from the spec.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import msgpack
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"CBP1"
_CIPHERS = {"aes-256-gcm": AESGCM, "chacha20-poly1305": ChaCha20Poly1305}


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def decompress_body(body: bytes) -> bytes:
    """§4: ``tag(1) ‖ payload``; tag 0 raw, 1 a zstd frame."""
    tag, payload = body[0], body[1:]
    if tag == 0:
        return payload
    assert tag == 1, f"unknown compression tag {tag}"
    return zstandard.ZstdDecompressor().decompressobj().decompress(payload)


class SpecStore:
    def __init__(self, root: Path, passphrase: str | None) -> None:
        self.root = root
        self.config: dict[str, Any] = unpack((root / "config").read_bytes())
        assert self.config["format_version"] == 1
        self.cipher = self.config["encryption"]
        if self.cipher == "none":
            self.enc_key = None
            self.id_key: bytes = self.config["id_key"]
            self.chunker_seed = self.config["chunker_seed"]
        else:
            assert passphrase is not None
            master = self._unwrap(passphrase)
            self.enc_key, self.id_key = master["enc_key"], master["id_key"]
            self.chunker_seed = master["chunker_seed"]
        self.blobs: dict[bytes, tuple[str, str, int, int, int]] = {}
        for _name, idx in self.index_objects():
            for p in idx["packs"]:
                for bid, off, ln, raw in p["blobs"]:
                    self.blobs.setdefault(bid, (p["id"], p["kind"], off, ln, raw))

    def objects(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        """(name, bytes) of every object under PREFIX, each checked against its name."""
        for p in sorted((self.root / prefix).rglob("*")):
            if p.is_file() and not p.name.startswith(".tmp-"):
                data = p.read_bytes()
                assert blake3.blake3(data).hexdigest() == p.name, f"{prefix}{p.name}"
                yield p.name, data

    def _unwrap(self, passphrase: str) -> dict[str, Any]:
        """§4: the key object wraps the master key under scrypt(passphrase, salt)."""
        for name, data in self.objects("keys"):
            k = unpack(data)
            assert (k["version"], k["kdf"], k["cipher"]) == (1, "scrypt", "aes-256-gcm"), name
            kek = Scrypt(salt=k["salt"], length=32, n=k["n"], r=k["r"], p=k["p"]).derive(
                passphrase.encode())
            w = k["wrapped"]
            plain = AESGCM(kek).decrypt(w[:12], w[12:], b"casbackup-key-v1")
            return unpack(plain)  # type: ignore[no-any-return]
        raise AssertionError("no key object")

    def unseal(self, kind: str, data: bytes) -> bytes:
        """§4: ``nonce(12) ‖ AEAD(enc_key, nonce, body, "casbackup:" + kind)`` or ``body``."""
        if self.enc_key is None:
            return decompress_body(data)
        aead = _CIPHERS[self.cipher](self.enc_key)
        return decompress_body(aead.decrypt(data[:12], data[12:], b"casbackup:" + kind.encode()))

    def index_objects(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, data in self.objects("index"):
            yield name, unpack(self.unseal("index", data))

    def snapshots(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, data in self.objects("snapshots"):
            yield name, unpack(self.unseal("snapshot", data))

    def pack_header(self, name: str) -> list[list[Any]]:
        """§5: ``… ‖ sealed header ‖ u32 LE header length ‖ "CBP1"``."""
        data = (self.root / "packs" / name[:2] / name).read_bytes()
        assert data[-4:] == MAGIC, f"pack {name} trailer"
        (hlen,) = struct.unpack("<I", data[-8:-4])
        return unpack(self.unseal("header", data[-8 - hlen:-8]))  # type: ignore[no-any-return]

    def blob(self, blob_id: bytes) -> bytes:
        pack, kind, off, ln, raw = self.blobs[blob_id]
        with open(self.root / "packs" / pack[:2] / pack, "rb") as f:
            f.seek(off)
            sealed = f.read(ln)
        plain = self.unseal(kind, sealed)
        assert len(plain) == raw, f"blob {blob_id.hex()} raw length"
        assert blake3.blake3(plain, key=self.id_key).digest() == blob_id, f"blob {blob_id.hex()}"
        return plain

    def tree(self, tree_id: bytes) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = unpack(self.blob(tree_id))["nodes"]
        return nodes

    def find(self, root_tree: bytes, path: str) -> dict[str, Any]:
        """The node of absolute PATH under a snapshot's root tree (§7: mirrored paths)."""
        node: dict[str, Any] = {"subtree": root_tree}
        for part in path.strip("/").split("/"):
            node = next(n for n in self.tree(node["subtree"]) if n["name"] == part.encode())
        return node
