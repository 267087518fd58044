"""``envopts.env_int``: the one parse of an integer environment variable (issue: the same
parse was written in backends/ and ops/save_pool.py). Hypothesis over what a user may set."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casbackup.backends import REMOTE_ATTEMPTS, remote_attempts
from casbackup.envopts import env_int
from casbackup.errors import UsageError

NAME = "CASBACKUP_TEST_ENVOPTS"


@given(n=st.integers(-1000, 1000), minimum=st.integers(-5, 5),
       pad=st.sampled_from(["", " ", "\t", " \n"]))
def test_an_integer_at_or_above_the_minimum_is_taken(n: int, minimum: int, pad: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(NAME, f"{pad}{n}{pad}")
        if n >= minimum:
            assert env_int(NAME, minimum=minimum, rule="r") == n
        else:
            with pytest.raises(UsageError) as e:
                env_int(NAME, minimum=minimum, rule="at least it")
            assert str(e.value) == f"{NAME} must be at least it, not {str(n)!r}"


@given(raw=st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s))
def test_anything_else_is_one_line_naming_the_variable(raw: str) -> None:
    try:
        int(raw.strip())
        return  # an integer: the test above
    except ValueError:
        pass
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(NAME, raw)
        if not raw.strip():
            assert env_int(NAME, minimum=0, rule="r") is None  # blank: the default
            return
        with pytest.raises(UsageError) as e:
            env_int(NAME, minimum=0, rule="a number")
        msg = str(e.value)
        assert msg == f"{NAME} must be a number, not {raw.strip()!r}" and "\n" not in msg


def test_unset_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    assert env_int(NAME, minimum=1, rule="r") is None


def test_remote_attempts_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASBACKUP_RETRIES", raising=False)
    assert remote_attempts() == REMOTE_ATTEMPTS
    monkeypatch.setenv("CASBACKUP_RETRIES", " 3 ")
    assert remote_attempts() == 3
    for bad in ("0", "-2", "three"):
        monkeypatch.setenv("CASBACKUP_RETRIES", bad)
        with pytest.raises(UsageError, match=f"CASBACKUP_RETRIES must be a positive "
                                             f"integer, not '{bad}'"):
            remote_attempts()
