"""A hostile S3 endpoint whose listings repeat every key and give them out of order (a
buggy S3 clone, a proxy that replays pages), in front of a real moto server (the
forwarding proxy of tests/helpers.py); everything else passes through.

backup, forget, gc (both phases), verify --read-data, snapshots and restore run through
it as real processes: each succeeds as on an honest endpoint (a repeated key is the same
object: nothing is counted, condemned or deleted twice, no command fails on a name seen
twice), and the store read directly afterwards verifies and restores exactly.

Before the fixes: the retry layer's resume rule (``backends/retry.py``: skip keys up to
the last one given) dropped every key after the first of a descending listing, so gc saw
one index object and stopped (exit 13: a snapshot's tree "in no index"; a lock listing
cut the same way hides live sessions from gc); and ``forget --keep-last 1`` saw each
snapshot twice and deleted the one it kept (``Store.snapshot_ids`` now names each once).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import MotoS3
from tests.helpers import (
    assert_same_tree,
    cli_env,
    forwarding_proxy,
    json_lines,
    json_result,
    loopback_http,
    restored_root,
    run_cli,
)

_CONTENTS = re.compile(rb"<Contents>.*?</Contents>", re.S)


def _repeat_and_shuffle(command: str, path: str, status: int,
                        headers: list[tuple[str, str]], data: bytes
                        ) -> tuple[int, list[tuple[str, str]], bytes]:
    if command != "GET" or "list-type=2" not in (urlsplit(path).query or "") or status != 200:
        return status, headers, data
    items = _CONTENTS.findall(data)
    if not items:
        return status, headers, data
    start, end = data.index(items[0]), data.rindex(items[-1]) + len(items[-1])
    body = b"".join(reversed(items)) + b"".join(items)  # each twice, out of order
    return status, headers, data[:start] + body + data[end:]


@pytest.mark.slow
def test_listings_that_repeat_and_reorder_keys(s3_server: MotoS3, tmp_path: Path) -> None:
    prefix = "relist-" + tmp_path.name[-12:].replace("_", "-")
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(8):
        (src / ("d" if i % 2 else "") / f"f{i}").write_bytes(os.urandom(200_000))
    env = cli_env(CASBACKUP_RETRIES="2")
    with loopback_http(forwarding_proxy(s3_server.endpoint, _repeat_and_shuffle)) as base:
        url = (f"s3://{s3_server.bucket}/{prefix}?endpoint={quote(base, safe='')}"
               "&region=us-east-1")

        def cli(*args: str) -> bytes:
            r = run_cli(*args, env=env)
            assert r.returncode == 0, (args, r.stderr)
            return r.stdout

        cli("init", "--store", url, "--pack-size", "1")
        cli("backup", "--store", url, str(src))
        (src / "f0").write_bytes(os.urandom(200_000))
        shutil.rmtree(src / "d")
        cli("backup", "--store", url, str(src))
        cli("forget", "--store", url, "--keep-last", "1")
        assert len(json_lines(cli("snapshots", "--store", url, "--json"), "snapshot")) == 1
        rep = json_result(cli("gc", "--store", url, "--json"))
        assert rep["packs_deleted"] + rep["packs_removed"] > 0, rep  # the forgotten data
        assert json_result(cli("verify", "--store", url, "--read-data", "--json"))["ok"]
        out = tmp_path / "out"
        cli("restore", "--store", url, "latest", "--target", str(out))
        assert_same_tree(restored_root(out, src), src)
        cli("backup", "--store", url, str(src))
        rep = json_result(cli("gc", "--store", url, "--json"))
        assert rep["warnings"] == [], rep
    direct = s3_server.url(prefix)
    r = run_cli("verify", "--store", direct, "--read-data", "--json", env=env)
    assert r.returncode == 0 and json_result(r.stdout)["ok"], r.stdout
    out2 = tmp_path / "out2"
    r = run_cli("restore", "--store", direct, "latest", "--target", str(out2), env=env)
    assert r.returncode == 0, r.stderr
    assert_same_tree(restored_root(out2, src), src)
