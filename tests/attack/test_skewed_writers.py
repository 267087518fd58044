"""Writers whose clocks are an hour off, beside a gc whose clock is right or an hour off
the other way (``faketime``, real processes; docs/design.md §8: staleness by the backend's
clock, writer clocks never enter into it). libfaketime also shifts the file times that
``stat`` returns, so on a local store each process sees mtimes on its own skewed clock.

Two live backups (heartbeats running, each reading a slow ``--stdin``; one clock an hour
behind, one an hour ahead) deduplicate against the garbage of a forgotten snapshot,
older than gc's epoch record. gc, run after more than STALE (3 s), may condemn that
garbage but must delete none of it while they run; both backups then copy what they
reused out of the condemned packs and commit, the next gc deletes the condemned packs,
and both snapshots pass ``verify --read-data`` and dump exactly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cli_env, json_lines, json_result, run_cli

STALE = "3"


def _cli(url: str, *args: str, prefix: list[str] | None = None,
         data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = cli_env(CASBACKUP_TEST_LOCK_STALE=STALE, FAKETIME_DONT_FAKE_MONOTONIC="1")
    return subprocess.run([*(prefix or []), sys.executable, "-m", "casbackup", args[0],
                           "--store", url, *args[1:]], env=env, capture_output=True,
                          input=data, timeout=180)


def _skew(offset: str) -> list[str]:
    return [] if offset == "0" else ["faketime", "-f", offset]


# S3 times are the server's (faketime shifts none of them): one gc clock is enough there
@pytest.mark.parametrize(("kind", "gc_offset"),
                         [("local", "0"), ("local", "+1h"), ("local", "-1h"), ("s3", "0")])
def test_writers_an_hour_off_keep_their_packs_beside_gc(
        kind: str, gc_offset: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if shutil.which("faketime") is None:
        pytest.skip("faketime is not installed (scripts/setup.sh --test installs it)")
    url = str(tmp_path / "store") if kind == "local" else request.getfixturevalue("s3_url")
    old = os.urandom(3 << 20)
    assert _cli(url, "init", "--pack-size", "1").returncode == 0
    assert _cli(url, "backup", "--stdin", data=old).returncode == 0
    assert _cli(url, "gc").returncode == 0  # leaves the epoch record
    r = _cli(url, "forget", "--keep-last", "0", "--keep-tag", "none")
    assert r.returncode == 0, r.stderr
    datas = {"behind": old, "ahead": old[: 3 << 19] + os.urandom(1 << 20)}
    env = cli_env(CASBACKUP_TEST_LOCK_STALE=STALE, FAKETIME_DONT_FAKE_MONOTONIC="1")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, off in (("behind", "-1h"), ("ahead", "+1h")):
            procs[name] = subprocess.Popen(
                [*_skew(off), sys.executable, "-m", "casbackup", "backup", "--store", url,
                 "--stdin", "--stdin-filename", name], env=env, stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            stdin = procs[name].stdin
            assert stdin is not None
            stdin.write(datas[name][: 1 << 20])
            stdin.flush()
        time.sleep(float(STALE) * 2 + 1)  # longer than STALE: only heartbeats keep them live
        r = _cli(url, "gc", "--max-wait", "0", "--json", prefix=_skew(gc_offset))
        assert r.returncode == 0, r.stderr
        rep = json_result(r.stdout)
        assert rep["packs_removed"] == 0, rep
        if kind == "local" or rep["packs_condemned"]:
            assert rep["records_waiting"] >= 1, rep  # it waits for the live backups
        for name, p in procs.items():
            assert p.stdin is not None and p.stderr is not None
            p.stdin.write(datas[name][1 << 20:])
            p.stdin.close()
            err = p.stderr.read().decode()
            assert p.wait(timeout=180) == 0, (name, err)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    r = _cli(url, "gc", "--json")
    assert r.returncode == 0, r.stderr
    r = _cli(url, "verify", "--read-data", "--json")
    assert r.returncode == 0 and json_result(r.stdout)["ok"] is True, r.stdout
    snaps = json_lines(_cli(url, "snapshots", "--json").stdout, "snapshot")
    assert len(snaps) == 2
    for s in snaps:
        (path,) = s["paths"]
        name = str(path).rsplit("/", 1)[-1]
        r = run_cli("dump", "--store", url, str(s["id"]), str(path), env=env)
        assert r.returncode == 0 and r.stdout == datas[name], (name, r.stderr)
