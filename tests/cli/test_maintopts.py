"""Parsing of the maintenance options shared by gc/prune and forget --prune."""

from __future__ import annotations

import pytest

from casbackup.cli.maintopts import gc_options, parse_share, parse_span
from casbackup.errors import UsageError


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0),
    ("1h30m", 5400.0), ("2d", 172800.0), ("1.5h", 5400.0),
])
def test_parse_span(text: str, seconds: float) -> None:
    assert parse_span(text, "--retry-lock") == seconds


@pytest.mark.parametrize("text", ["", "h", "5x", "-1s", "1h 2m"])
def test_parse_span_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--retry-lock"):
        parse_span(text, "--retry-lock")


@pytest.mark.parametrize(("text", "share"), [("5%", 0.05), ("0.05", 0.05), ("0", 0.0),
                                             ("100%", 1.0), ("12.5%", 0.125)])
def test_parse_share(text: str, share: float) -> None:
    assert parse_share(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["150%", "-1%", "abc", "2"])
def test_parse_share_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--max-unused"):
        parse_share(text)


def test_gc_options() -> None:
    o = gc_options("10%", "30m", "1m", True)
    assert (o.max_unused, o.keep_unindexed_for, o.retry_lock, o.dry_run) == (0.1, 1800, 60, True)
