"""An S3 endpoint that lies about the times of lock objects: a proxy in front of a real
moto server rewrites ``LastModified`` in listings and ``Last-Modified`` on HEAD for every
key under ``locks/`` to the epoch (a backend that gives no time), to a fixed time years
ahead (a backend whose clock is far off), or, per object, to the epoch or the truth
(docs/design.md §8: no backend mtime -> the writers' times with a 24 h skew margin),
or per object to years ahead or the truth.

A backup (a real process, heartbeat running) reading a slow ``--stdin`` deduplicates
against the garbage of a forgotten snapshot; a gc (a real process, STALE = 3 s, run
after more than STALE) must not take it for stale: it deletes nothing, the backup
commits, and the snapshot passes ``verify --read-data`` and restores exactly. Only when
times disagree per object (ours years ahead, the backup's true) can gc take the live
backup for stale and delete what it reused; the backup then refuses to commit with one
line (W2) and the store stays sound."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import MotoS3
from tests.helpers import cli_env, forwarding_proxy, json_lines, json_result, loopback_http, run_cli

STALE = "3"
EPOCH_XML, EPOCH_HTTP = "1970-01-01T00:00:00.000Z", "Thu, 01 Jan 1970 00:00:00 GMT"
AHEAD_XML, AHEAD_HTTP = "2099-01-01T00:00:00.000Z", "Thu, 01 Jan 2099 00:00:00 GMT"


def _lie(mode: str, key: str) -> bool:
    """Whether the time of KEY (a lock object) is replaced in MODE."""
    return (not mode.endswith("-or-true")
            or hashlib.sha256(key.encode()).digest()[0] & 1 == 1)


def _handler(target: str, mode: str) -> type[http.server.BaseHTTPRequestHandler]:
    xml_t = AHEAD_XML if mode.startswith("ahead") else EPOCH_XML
    http_t = AHEAD_HTTP if mode.startswith("ahead") else EPOCH_HTTP

    def contents(m: re.Match[bytes]) -> bytes:
        block = m.group(0)
        key = re.search(rb"<Key>([^<]*)</Key>", block)
        if key is None or b"/locks/" not in key.group(1) or not _lie(mode, key.group(1).decode()):
            return block
        return re.sub(rb"<LastModified>[^<]*</LastModified>",
                      b"<LastModified>" + xml_t.encode() + b"</LastModified>", block)

    def rewrite(command: str, path: str, status: int, headers: list[tuple[str, str]],
                data: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        if command == "GET" and "list-type=2" in path:
            data = re.sub(rb"<Contents>.*?</Contents>", contents, data, flags=re.S)
        key = urlsplit(path).path
        if "/locks/" in key and _lie(mode, key):
            headers = [(k, http_t if k.lower() == "last-modified" else v) for k, v in headers]
        return status, headers, data

    return forwarding_proxy(target, rewrite)


@pytest.mark.parametrize("mode", ["epoch", "ahead", "epoch-or-true", "ahead-or-true"])
def test_lock_times_a_backend_lies_about_never_make_a_live_backup_stale(
        mode: str, s3_server: MotoS3, tmp_path: Path) -> None:
    prefix = "mtime-" + mode + "-" + tmp_path.name[-10:].replace("_", "-")
    data = os.urandom(3 << 20)
    env = cli_env(CASBACKUP_TEST_LOCK_STALE=STALE, CASBACKUP_RETRIES="2")
    with loopback_http(_handler(s3_server.endpoint, mode)) as base:
        url = (f"s3://{s3_server.bucket}/{prefix}?endpoint={quote(base, safe='')}"
               "&region=us-east-1")
        assert run_cli("init", "--store", url, "--pack-size", "1", env=env).returncode == 0
        r = run_cli("backup", "--store", url, "--stdin", input=data, env=env)
        assert r.returncode == 0, r.stderr
        r = run_cli("forget", "--store", url, "--keep-last", "0", "--keep-tag", "none",
                    env=env)
        assert r.returncode == 0, r.stderr  # its packs are garbage the next backup reuses
        b = subprocess.Popen([sys.executable, "-m", "casbackup", "backup", "--store", url,
                              "--stdin"], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert b.stdin is not None
            b.stdin.write(data[: 1 << 20])
            b.stdin.flush()
            time.sleep(float(STALE) * 2 + 1)  # its heartbeat runs; its reads wait
            r = run_cli("gc", "--store", url, "--max-wait", "0", "--json", env=env)
            assert r.returncode == 0, r.stderr
            rep = json_result(r.stdout)
            if mode != "ahead-or-true":
                assert rep["packs_removed"] == 0, rep
            b.stdin.write(data[1 << 20:])
            b.stdin.close()
            assert b.stderr is not None
            err = b.stderr.read().decode()
            code = b.wait(timeout=120)
            if rep["packs_removed"]:
                # times that disagree per object (ours years ahead, the backup's true)
                # make the live backup look stale; its own lock objects then show it a
                # gap far above STALE/2, so it re-checks every pack it reused, finds
                # them gone and commits nothing (DESIGN §8 W2): refused, never lost
                assert code == 11 and "nothing was committed" in err, (code, err)
                assert err.strip().count("\n") == 0, err
                r = run_cli("snapshots", "--store", url, "--json", env=env)
                assert json_lines(r.stdout, "snapshot") == []
                r = run_cli("verify", "--store", url, "--read-data", "--json", env=env)
                assert r.returncode == 0 and json_result(r.stdout)["ok"] is True, r.stdout
                return
            assert code == 0, err
        finally:
            if b.poll() is None:
                b.kill()
                b.wait()
        r = run_cli("snapshots", "--store", url, "--json", env=env)
        (snap,) = json_lines(r.stdout, "snapshot")
        r = run_cli("verify", "--store", url, "--read-data", "--json", env=env)
        assert r.returncode == 0 and json_result(r.stdout)["ok"] is True, r.stdout
        r = run_cli("dump", "--store", url, str(snap["id"]), "/stdin", env=env)
        assert r.returncode == 0 and r.stdout == data, r.stderr
