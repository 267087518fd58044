"""A hostile S3 endpoint that answers 404 to every GET of a lock object (``locks/``) while
listings, HEAD, PUT and DELETE pass through to a real moto server: ``backup``, ``gc`` and
``snapshots`` (real processes) each end within a bounded time (``snapshots``, which decides
nothing from other sessions' locks, may succeed; the others exit 11, Locked, with one line on
stderr), and gc deletes nothing while another session holds a live lock it cannot
read (the object set of the store is unchanged)."""

from __future__ import annotations

import http.client
import http.server
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3  # type: ignore[import-untyped]

from casbackup.store import open_store
from casbackup.store.locks import Session
from tests.conftest import MotoS3
from tests.helpers import PASSWORD, cli_env, forwarding_proxy, loopback_http, run_cli

TIMEOUT = 120.0  # seconds a command may take (about 30 s of retries at most)


def _handler(target: str) -> type[http.server.BaseHTTPRequestHandler]:
    """moto behind a proxy that answers every GET of a lock object with 404."""
    msg = b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"

    def rewrite(command: str, path: str, status: int, headers: list[tuple[str, str]],
                data: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        if command == "GET" and "/locks/" in urlsplit(path).path:
            return 404, [("Content-Type", "application/xml")], msg
        return status, headers, data

    return forwarding_proxy(target, rewrite, timeout=30)


def _objects(s3: MotoS3, prefix: str) -> set[str]:
    c = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    keys: set[str] = set()
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket,
                                                            Prefix=prefix + "/"):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    return keys


def test_lock_reads_that_404_never_look_unlocked(s3_server: MotoS3, tmp_path: Path) -> None:
    prefix = "lock404-" + tmp_path.name[-12:].replace("_", "-")
    direct = s3_server.url(prefix)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a" * 300_000)
    env = cli_env(CASBACKUP_RETRIES="2")
    assert run_cli("init", "--store", direct, env=env).returncode == 0
    assert run_cli("backup", "--store", direct, str(src), env=env).returncode == 0
    r = run_cli("forget", "--store", direct, "--keep-last", "0", "--keep-tag", "none", env=env)
    assert r.returncode == 0, r.stderr  # garbage for gc to want to delete
    holder = Session(open_store(direct, lambda: PASSWORD), "backup")
    holder.acquire()  # a live backup elsewhere: its lock can be listed but never read
    try:
        with loopback_http(_handler(s3_server.endpoint)) as base:
            hostile = (f"s3://{s3_server.bucket}/{prefix}?endpoint={quote(base, safe='')}"
                       "&region=us-east-1")
            before = _objects(s3_server, prefix)
            results = {}
            for args in (["gc"], ["snapshots"], ["backup", str(src)]):
                r = run_cli(args[0], "--store", hostile, *args[1:], env=env, timeout=TIMEOUT)
                results[args[0]] = r
                lines = r.stderr.decode().strip().splitlines()
                if args[0] == "snapshots" and r.returncode == 0:
                    continue  # a reader decides nothing from other sessions' locks
                assert r.returncode == 11, (args, r.returncode, r.stderr)  # Locked
                assert len(lines) == 1 and lines[0].startswith("casbackup: "), r.stderr
            after = _objects(s3_server, prefix)
            assert {k for k in before - after if "/locks/" not in k} == set(), "gc deleted"
    finally:
        holder.release()
