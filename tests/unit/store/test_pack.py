"""Pack format: build and parse, and every kind of damage is an IntegrityError."""

from __future__ import annotations

import os

import pytest

from casbackup.crypto.codec import DATA, Codec
from casbackup.errors import IntegrityError
from casbackup.ids import object_name
from casbackup.store.pack import PackEntry, finish_pack, parse_header


def _pack(codec: Codec) -> tuple[str, bytes, list[PackEntry]]:
    blobs = []
    off = 0
    for i in range(5):
        data = os.urandom(1000 + i)
        sealed = codec.seal(DATA, data)
        e = PackEntry(DATA, codec.blob_id(data), off, len(sealed), len(data))
        blobs.append((e, sealed))
        off += len(sealed)
    name, raw = finish_pack(codec, bytearray().join(b for _, b in blobs), [e for e, _ in blobs])
    return name, raw, [e for e, _ in blobs]


def test_pack_roundtrip_and_name() -> None:
    codec = Codec(os.urandom(32), os.urandom(32), "aes-256-gcm")
    name, raw, entries = _pack(codec)
    assert name == object_name(raw)
    assert parse_header(codec, raw, name) == entries
    for e in entries:
        codec.unseal_blob(DATA, e.id, raw[e.offset:e.offset + e.length], e.raw_length)


@pytest.mark.parametrize("cut", [1, 4, 8, 100])
def test_parse_rejects_truncated_pack(cut: int) -> None:
    codec = Codec(os.urandom(32), os.urandom(32), "aes-256-gcm")
    name, raw, _ = _pack(codec)
    with pytest.raises(IntegrityError, match=name[:16]):
        parse_header(codec, raw[:-cut], name)


def test_parse_rejects_damaged_header() -> None:
    codec = Codec(os.urandom(32), os.urandom(32), "aes-256-gcm")
    name, raw, _ = _pack(codec)
    bad = bytearray(raw)
    bad[-20] ^= 0xFF
    with pytest.raises(IntegrityError):
        parse_header(codec, bytes(bad), name)
