"""The config decoder: any bytes give a StoreConfig, StoreNotFound (not a casbackup config)
or IntegrityError naming config -- never another exception -- and decode accepts exactly
the parameters init accepts (issue #11)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from casbackup import serde
from casbackup.chunking import ChunkerParams
from casbackup.errors import IntegrityError, StoreNotFound
from casbackup.store.config import (
    PACK_SIZES_READ,
    StoreConfig,
    param_problem,
)

GOOD_ENC = StoreConfig.new("aes-256-gcm")
GOOD_NONE = StoreConfig.new("none", id_key=bytes(range(32))).with_seed(12345)

# values a field might be given by a crafted config
ints = st.integers(min_value=-2**63, max_value=2**64 - 1)  # what msgpack can encode
junk = st.one_of(
    st.none(), st.booleans(), ints,
    st.floats(allow_nan=True), st.text(max_size=50), st.binary(max_size=50),
    st.lists(ints, max_size=3), st.dictionaries(st.text(max_size=5), ints, max_size=3),
)


def _decode(data: bytes) -> StoreConfig | None:
    try:
        return StoreConfig.decode(data)
    except StoreNotFound:
        return None
    except IntegrityError as e:
        msg = str(e)
        assert "\n" not in msg and ("config" in msg or "format version" in msg), msg
        return None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_integrity_error(data: bytes) -> None:
    _decode(data)


@settings(max_examples=600, deadline=None)
@given(base=st.sampled_from([GOOD_ENC, GOOD_NONE]), field=st.sampled_from(
    ["format_version", "store_id", "hash", "compression", "compression_level", "encryption",
     "chunker", "pack_size", "id_key", "chunker_seed", "chunker.min_size", "chunker.avg_size",
     "chunker.max_size", "chunker.algorithm"]), value=junk, drop=st.booleans())
@example(base=GOOD_ENC, field="pack_size", value=(1 << 30) + 1, drop=False)  # readable, not init's
def test_a_changed_or_missing_field_is_a_value_or_integrity_error(
        base: StoreConfig, field: str, value: Any, drop: bool) -> None:
    m = serde.unpack(base.encode())
    target, key = (m["chunker"], field.split(".")[1]) if "." in field else (m, field)
    if drop:
        target.pop(key, None)
    else:
        target[key] = value
    got = _decode(serde.pack(m))
    if got is not None:  # whatever decodes passes the reader's checks and round-trips
        c = got.chunker  # (a stored pack size may exceed init's 1 GiB, up to 4 GiB)
        assert param_problem(got.compression_level, got.pack_size, c.algorithm, c.min_size,
                             c.avg_size, c.max_size, pack_sizes=PACK_SIZES_READ) is None
        assert StoreConfig.decode(got.encode()) == got


def test_valid_configs_round_trip() -> None:
    assert StoreConfig.decode(GOOD_ENC.encode()) == GOOD_ENC
    assert StoreConfig.decode(GOOD_NONE.encode()) == GOOD_NONE


@pytest.mark.parametrize(("level", "pack", "chunker", "ok"), [
    (3, 16 << 20, ChunkerParams(), True),
    (1, 1 << 20, ChunkerParams(), True),
    (22, 1 << 30, ChunkerParams(), True),
    (0, 16 << 20, ChunkerParams(), False),
    (23, 16 << 20, ChunkerParams(), False),
    (99, 16 << 20, ChunkerParams(), False),
    (3, -1 << 20, ChunkerParams(), False),
    (3, 4 << 10, ChunkerParams(), True),  # the store layer's floor (tests use small packs)
    (3, (4 << 10) - 1, ChunkerParams(), False),
    (3, 0, ChunkerParams(), False),
    (3, (1 << 30) + 1, ChunkerParams(), False),
    (True, 16 << 20, ChunkerParams(), False),
    (3, 16 << 20, ChunkerParams(min_size=2 << 20, avg_size=1 << 20), False),
    (3, 16 << 20, ChunkerParams(max_size=32 << 20), False),
    (3, 16 << 20, ChunkerParams(algorithm="rabin"), False),
])
def test_param_bounds(level: int, pack: int, chunker: ChunkerParams, ok: bool) -> None:
    problem = param_problem(level, pack, chunker.algorithm, chunker.min_size,
                            chunker.avg_size, chunker.max_size)
    assert (problem is None) == ok, problem
    if problem:
        assert "\n" not in problem
