"""Identifiers: BlobIds (keyed BLAKE3 of plaintext), object names (BLAKE3 of stored
bytes) and the kinds of sealed things they name.

Invariants: an id is always 32 raw bytes in memory and 64 lowercase hex digits on the
wire/in keys. ``object_name`` is unkeyed so anyone can check an object for bit rot
without the password; ``blob_id`` is keyed with the store's id key so ids reveal nothing
about content to someone without the key. The kind strings are part of the format (the
codec's AEAD associated data, pack headers, index entries): they live here, beside the
ids, so that code naming a blob's kind never imports ``crypto/``.
"""

from __future__ import annotations

import blake3

from .fields import HEX

ID_LEN = 32

# Kinds of sealed things; the byte values are part of the format (AEAD associated data).
DATA = "data"  # a chunk of a file
TREE = "tree"  # a directory listing
HEADER = "header"  # a pack's header
INDEX = "index"  # an index object
SNAPSHOT = "snapshot"  # a snapshot manifest
LOCK = "lock"  # a lock object
GC_RECORD = "gc"  # condemnation records of two-phase gc (DESIGN §8)
KINDS = (DATA, TREE, HEADER, INDEX, SNAPSHOT, LOCK, GC_RECORD)
BLOB_KINDS = (DATA, TREE)  # the kinds a pack holds


def object_name(data: bytes | bytearray | memoryview) -> str:
    """Hex BLAKE3 of an object's stored bytes: its name under packs/, index/, snapshots/."""
    return blake3.blake3(data, max_threads=1).hexdigest()


def blob_id(id_key: bytes, data: bytes | memoryview) -> bytes:
    """Keyed BLAKE3-256 of a blob's plaintext."""
    return blake3.blake3(data, key=id_key).digest()


def blob_hasher(id_key: bytes) -> blake3.blake3:
    """A new incremental ``blob_id``: ``update`` in pieces, then ``digest``."""
    return blake3.blake3(key=id_key)


def is_hex_id(text: str) -> bool:
    """A whole id as lowercase hex: 64 digits."""
    return len(text) == 2 * ID_LEN and all(c in HEX for c in text)


def is_id_prefix(text: str, min_digits: int = 4) -> bool:
    """An abbreviated id as the user may type it: 4 to 64 hex digits, either case."""
    return min_digits <= len(text) <= 2 * ID_LEN and all(c in HEX for c in text.lower())
