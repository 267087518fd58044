"""Key objects: any bytes parse to a KeyObject or IntegrityError (never another exception,
never an unbounded scrypt); the config binding MAC (issue #11)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup import serde
from casbackup.crypto import keys
from casbackup.errors import IntegrityError, WrongPassword

MASTER = keys.MasterKey.generate()
STORE_ID = "ab" * 16
CONFIG = b"config bytes"
BOUND = keys.wrap(MASTER, "pw", n=2**4, store_id=STORE_ID, config=CONFIG)
LEGACY = keys.wrap(MASTER, "pw", n=2**4)

ints = st.integers(min_value=-2**63, max_value=2**64 - 1)
junk = st.one_of(st.none(), st.booleans(), ints, st.floats(), st.text(max_size=40),
                 st.binary(max_size=80), st.lists(ints, max_size=3))
FIELDS = ["version", "kdf", "n", "r", "p", "salt", "cipher", "wrapped", "store_id", "binding",
          "created", "hostname", "username"]


def _open(data: bytes) -> keys.MasterKey | None:
    """unwrap with the right passphrase: a value, WrongPassword or IntegrityError."""
    try:
        obj = keys.parse(data)
    except IntegrityError as e:
        assert "\n" not in str(e)
        return None
    assert keys.check_kdf(obj.n, obj.r, obj.p) is None
    keys.describe(data)
    try:
        return keys.unwrap(obj, "pw")
    except (WrongPassword, IntegrityError):
        return None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_integrity_error(data: bytes) -> None:
    _open(data)


@settings(max_examples=600, deadline=None)
@given(base=st.sampled_from([BOUND, LEGACY]), field=st.sampled_from(FIELDS), value=junk,
       drop=st.booleans())
def test_a_changed_or_missing_field_is_handled(base: bytes, field: str, value: Any,
                                               drop: bool) -> None:
    m = serde.unpack(base)
    if drop:
        m.pop(field, None)
    else:
        m[field] = value
    got = _open(serde.pack(m))
    if got is not None:
        assert got == MASTER


@pytest.mark.parametrize(("n", "r", "p"), [
    (2**40, 8, 1), (2**21, 8, 1), (2**24, 1, 1), (2**20, 16, 1), (3, 8, 1), (2**10, 0, 1),
    (2**10, 8, 0), (2**10, 8, 17), (2**10, 65, 1), (1, 8, 1), (True, 8, 1), (2.0**10, 8, 1),
    (2**20, 8, 5), (2**19, 8, 9),
])
def test_out_of_bounds_kdf_is_damage_not_a_derivation(n: Any, r: Any, p: Any) -> None:
    m = serde.unpack(BOUND)
    m.update(n=n, r=r, p=p)
    with pytest.raises(IntegrityError, match="scrypt"):
        keys.unwrap(serde.pack(m), "pw")  # n=2**40 was a MemoryError traceback


def test_largest_allowed_kdf_is_accepted_by_the_check() -> None:
    assert keys.check_kdf(2**20, 8, 1) is None  # 1 GiB
    assert keys.check_kdf(2**17, 8, 16) is None


def test_binding_names_the_store_and_the_config_bytes() -> None:
    bound = keys.parse(BOUND)
    assert bound.version == 2 and bound.store_id == STORE_ID and bound.binding is not None
    assert keys.binding_matches(MASTER, bound.binding, STORE_ID, CONFIG)
    assert not keys.binding_matches(MASTER, bound.binding, STORE_ID, CONFIG + b" ")
    assert not keys.binding_matches(MASTER, bound.binding, "cd" * 16, CONFIG)
    assert not keys.binding_matches(keys.MasterKey.generate(), bound.binding, STORE_ID, CONFIG)
    legacy = keys.parse(LEGACY)
    assert legacy.version == 1 and legacy.store_id is None and legacy.binding is None
    assert keys.unwrap(legacy, "pw") == keys.unwrap(bound, "pw") == MASTER
