"""Retries are visible and a store that is not there fails fast.

- Every retry is one line on stderr naming the store, the try, the delay and the reason
  (and a ``retry`` JSON line with ``--json``), from real processes against a loopback
  S3 endpoint that answers 503, and from ``RetryingBackend`` over the faulty backend.
- Connection refused on the very first contact (S3 and SFTP on a closed port) fails in
  seconds, not after ~37 s of retries, with one line naming the store and what to check,
  and no library class name (``NoValidConnectionsError``) or ``[Errno None]``.
"""

from __future__ import annotations

import http.server
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest

from casbackup.backends.faulty import Fault, FaultyBackend
from casbackup.backends.memory import MemoryBackend
from casbackup.backends.retry import RetryingBackend, set_retry_listener
from casbackup.cli import output, progress
from casbackup.errors import TransientError, Unreachable
from tests.conftest import free_port
from tests.helpers import cli_env, json_lines, loopback_http, run_cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "json-schema" / "casbackup-1.schema.json").read_text())


class _Busy(http.server.BaseHTTPRequestHandler):
    def _busy(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _busy

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def busy_endpoint() -> Iterator[str]:
    with loopback_http(_Busy) as url:
        yield url


def _s3(endpoint: str) -> str:
    return f"s3://bucket/p?endpoint={quote(endpoint, safe='')}&allow_http=1"


S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
          "AWS_DEFAULT_REGION": "us-east-1"}


def test_each_retry_is_one_line_with_reason_and_delay(busy_endpoint: str) -> None:
    env = cli_env(CASBACKUP_RETRIES="3", **S3_ENV)
    r = run_cli("snapshots", "--store", _s3(busy_endpoint), env=env)
    assert r.returncode == 1
    lines = r.stderr.decode().splitlines()
    retries = [ln for ln in lines if ln.startswith("casbackup: retrying ")]
    assert len(retries) == 2, lines  # 3 tries: 2 retries
    for n, ln in zip((2, 3), retries, strict=True):
        assert ln.startswith(f"casbackup: retrying s3://bucket/p (endpoint {busy_endpoint}) in ")
        assert f"s (try {n} of 3): s3 get config: HTTP 503" in ln, ln
    assert lines[-1].startswith("casbackup: s3 get config: HTTP 503") and \
        "gave up after 3 attempts" in lines[-1]
    r = run_cli("snapshots", "--store", _s3(busy_endpoint), "--json", env=env)
    out = json_lines(r.stdout)
    assert [o["message_type"] for o in out] == ["retry", "retry", "exit_error"]
    for o in out:
        jsonschema.validate(o, SCHEMA)
    assert [o["attempt"] for o in out[:2]] == [2, 3] and out[0]["attempts"] == 3
    assert all(0 <= o["delay_seconds"] <= 10 and "HTTP 503" in o["reason"] for o in out[:2])


@pytest.mark.parametrize("kind", ["s3", "sftp"])
def test_connection_refused_on_first_contact_fails_fast(kind: str) -> None:
    port = free_port()  # nothing listens there
    url = (_s3(f"http://127.0.0.1:{port}") if kind == "s3"
           else f"sftp://backup@127.0.0.1:{port}/srv/store")
    env = cli_env(**S3_ENV)  # the default: 10 tries for a remote store
    t0 = time.monotonic()
    r = run_cli("snapshots", "--store", url, "--json", env=env)
    took = time.monotonic() - t0
    assert r.returncode == 1
    assert took < 20, f"{took:.1f} s: retried instead of failing fast"
    (line,) = r.stderr.decode().splitlines()
    assert "connection refused" in line.lower() and f"127.0.0.1:{port}" in line
    assert "check the store URL" in line and "server is running" in line
    assert "Error:" not in line and "[Errno" not in line and "retrying" not in line
    (err,) = json_lines(r.stdout)
    assert err["message_type"] == "exit_error" and err["code"] == 1
    assert err["message"] == line.removeprefix("casbackup: ")


def test_faulty_backend_retries_reach_the_listener(capsys: pytest.CaptureFixture[str]) -> None:
    faulty = FaultyBackend(MemoryBackend(), [Fault(ops=frozenset({"get"}), times=2)])
    faulty.inner.put("config", b"c")
    sleeps: list[float] = []
    retrying = RetryingBackend(faulty, attempts=4, sleep=sleeps.append, label="memory://t")
    set_retry_listener(progress.retry_line)
    try:
        output.JSON = False
        assert retrying.get("config") == b"c"
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and len(sleeps) == 2
        for n, (ln, d) in enumerate(zip(err, sleeps, strict=True), start=2):
            assert ln.startswith(f"casbackup: retrying memory://t in {d:.1f} s (try {n} of 4): ")
        faulty.faults.append(Fault(ops=frozenset({"get"}), times=1))
        output.JSON = True
        assert retrying.get("config") == b"c"
        cap = capsys.readouterr()
        (line,) = json_lines(cap.out)
        jsonschema.validate(line, SCHEMA)
        assert line["store"] == "memory://t" and line["attempt"] == 2
        assert cap.err.startswith("casbackup: retrying memory://t")
    finally:
        output.JSON = False
        set_retry_listener(None)


def test_unreachable_is_final_only_before_the_store_answered() -> None:
    faulty = FaultyBackend(MemoryBackend(), [Fault(times=None, error=Unreachable)])
    sleeps: list[float] = []
    retrying = RetryingBackend(faulty, attempts=5, sleep=sleeps.append, label="memory://u")
    with pytest.raises(Unreachable, match="nothing answers at memory://u: check the store"):
        retrying.get("config")
    assert sleeps == [] and len(faulty.calls) == 1
    faulty.faults.clear()
    faulty.inner.put("config", b"c")
    assert retrying.get("config") == b"c"  # reached once: now a restart is waited out
    faulty.faults.append(Fault(times=2, error=Unreachable))
    assert retrying.get("config") == b"c"
    assert len(sleeps) == 2
    faulty.faults.append(Fault(times=None, error=Unreachable))
    with pytest.raises(TransientError, match="gave up after 5 attempts"):
        retrying.get("config")
