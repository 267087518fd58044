"""Remote stores' retry policy and connection-failure messages (issue #4)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from casbackup.backends import REMOTE_ATTEMPTS, open_backend
from casbackup.backends.retry import RetryingBackend
from casbackup.errors import TransientError, UsageError
from tests.conftest import MotoS3, free_port


def test_remote_backends_retry_longer_than_local(
    s3_server: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASBACKUP_RETRIES", raising=False)
    local = open_backend(str(tmp_path / "l"))
    s3 = open_backend(s3_server.url("policy"))
    assert isinstance(local, RetryingBackend) and isinstance(s3, RetryingBackend)
    assert local.attempts == 5
    assert s3.attempts == REMOTE_ATTEMPTS and s3.max_delay >= 10
    monkeypatch.setenv("CASBACKUP_RETRIES", "2")
    s3 = open_backend(s3_server.url("policy"))
    assert isinstance(s3, RetryingBackend) and s3.attempts == 2
    for bad in ("0", "many"):
        monkeypatch.setenv("CASBACKUP_RETRIES", bad)
        with pytest.raises(UsageError, match="CASBACKUP_RETRIES"):
            open_backend(s3_server.url("policy"))


def test_s3_unreachable_endpoint_is_named(s3_server: MotoS3) -> None:
    port = free_port()
    url = f"s3://b/p?endpoint=http%3A%2F%2F127.0.0.1%3A{port}&region=us-east-1"
    b = open_backend(url, retry=False)
    with pytest.raises(TransientError) as info:
        b.get("config")
    assert str(info.value) == f"s3 get config: cannot reach 127.0.0.1:{port}: Connection refused"


def test_single_attempt_adds_no_gave_up_suffix(s3_server: MotoS3) -> None:
    url = f"s3://b/p?endpoint=http%3A%2F%2F127.0.0.1%3A{free_port()}"
    b = RetryingBackend(open_backend(url, retry=False), attempts=1)
    with pytest.raises(TransientError) as info:
        b.stat("config")
    assert "gave up" not in str(info.value)


def test_paramiko_logs_nothing_to_stderr() -> None:
    import casbackup.backends.sftp_pool  # noqa: F401

    handlers = logging.getLogger("paramiko").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)
