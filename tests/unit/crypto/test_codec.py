"""Codec: seal/unseal round trip, kind binding, tamper detection, compression choice."""

from __future__ import annotations

import os

import pytest

from casbackup.crypto import keys
from casbackup.crypto.codec import DATA, TREE, Codec
from casbackup.crypto.compress import RAW, ZSTD, Compressor
from casbackup.errors import IntegrityError, WrongPassword
from casbackup.scratch import Scratch


@pytest.fixture(params=["aes-256-gcm", "chacha20-poly1305", None])
def codec(request: pytest.FixtureRequest) -> Codec:
    enc = os.urandom(32) if request.param else None
    return Codec(os.urandom(32), enc, request.param or "aes-256-gcm")


@pytest.mark.parametrize("data", [b"", b"x", b"a" * 100_000, os.urandom(300_000)])
def test_seal_unseal_roundtrip(codec: Codec, data: bytes) -> None:
    sealed = codec.seal(DATA, data)
    assert codec.unseal_blob(DATA, codec.blob_id(data), sealed, len(data)) == data


def test_compressible_data_is_compressed_and_random_is_not() -> None:
    c = Compressor(3)
    assert c.compress(b"abc" * 100_000)[0] == ZSTD
    assert c.compress(os.urandom(300_000))[0] == RAW


def test_encrypted_seal_binds_kind_and_detects_flips() -> None:
    codec = Codec(os.urandom(32), os.urandom(32), "aes-256-gcm")
    sealed = codec.seal(DATA, b"secret content")
    assert b"secret" not in sealed
    with pytest.raises(IntegrityError):
        codec.unseal(TREE, sealed)  # a data blob cannot pass for a tree
    for i in (0, len(sealed) // 2, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 1
        with pytest.raises(IntegrityError):
            codec.unseal(DATA, bytes(bad))


def test_unsealed_blob_must_hash_to_its_id(codec: Codec) -> None:
    sealed = codec.seal(DATA, b"one")
    with pytest.raises(IntegrityError, match="does not hash"):
        codec.unseal_blob(DATA, codec.blob_id(b"two"), sealed)


def test_blob_ids_are_keyed() -> None:
    a, b = Codec(os.urandom(32), None, "aes-256-gcm"), Codec(os.urandom(32), None, "aes-256-gcm")
    assert a.blob_id(b"same") != b.blob_id(b"same")
    assert a.blob_id(b"same") == a.blob_id(b"same")


def test_key_wrap_unwrap_and_wrong_password() -> None:
    mk = keys.MasterKey.generate()
    blob = keys.wrap(mk, "correct horse", n=2**10)
    assert keys.unwrap(blob, "correct horse") == mk
    with pytest.raises(WrongPassword):
        keys.unwrap(blob, "battery staple")
    assert "wrapped" not in keys.describe(blob)


def test_blob_starting_random_and_ending_in_zeros_is_compressed() -> None:
    # a probe of only the head would call this incompressible and store 1.2 MB raw
    data = os.urandom(600_000) + bytes(600_000)
    out = Compressor(3).compress(data)
    assert out[0] == ZSTD and len(out) < 620_000


def test_unseal_blob_into_agrees_with_unseal_blob_and_reuses_scratch(codec: Codec) -> None:
    """verify's and restore's allocation-free unseal: the same plaintext and verdicts as
    unseal_blob, decrypted into one growing Scratch; views handed out survive growth."""
    scratch = Scratch()
    kept = []
    blobs = [b"x", b"ab" * 50_000, os.urandom(300_000), os.urandom(900_000)]
    for data in blobs:  # growing sizes: every unseal may have to grow SCRATCH
        sealed = codec.seal(DATA, data)
        out = codec.unseal_blob_into(DATA, codec.blob_id(data), memoryview(sealed), len(data),
                                     scratch)
        assert bytes(out) == data
        kept.append((out, bytes(out)))
        bad = bytearray(sealed)
        bad[len(bad) // 2] ^= 0x10
        with pytest.raises(IntegrityError):
            codec.unseal_blob_into(DATA, codec.blob_id(data), memoryview(bad), len(data), scratch)
        with pytest.raises(IntegrityError, match="does not hash"):
            codec.unseal_blob_into(DATA, codec.blob_id(b"other"), sealed, len(data), scratch)
        with pytest.raises(IntegrityError, match="index says"):
            codec.unseal_blob_into(DATA, codec.blob_id(data), sealed, len(data) + 1, scratch)
    if codec.encrypted:
        assert len(scratch) >= 900_000  # decrypted into the one buffer
        with pytest.raises(IntegrityError):
            codec.unseal_blob_into(TREE, codec.blob_id(b"x"), codec.seal(DATA, b"x"), 1, scratch)
    # a view from before a growth still holds its bytes (growth replaces, never resizes)
    out, copy = kept[0]
    assert bytes(out) == copy


def test_seal_into_reuses_one_buffer_and_unseals_like_seal(codec: Codec) -> None:
    scratch = Scratch()
    blobs = [b"tiny", os.urandom(200_000), b"z" * 1_500_000, b"q" * 10, os.urandom(700_000)]
    sealed_all = []
    for data in blobs:
        sealed = bytes(codec.seal_into(DATA, data, scratch))  # the packer copies at once
        sealed_all.append(sealed)
        assert codec.unseal_blob(DATA, codec.blob_id(data), sealed, len(data)) == data
        assert len(sealed) == len(codec.seal(DATA, data))  # same format, same size
    if codec.encrypted:  # fresh nonces: sealing the same blob twice differs
        assert bytes(codec.seal_into(DATA, blobs[0], scratch)) != sealed_all[0]
    assert len(scratch) >= 200_000
