"""Every command works the same on a local store, S3 (moto server) and SFTP (OpenSSH sshd).

The CLI runs as a subprocess (``python -m casbackup``) with ``CASBACKUP_PASSWORD`` and the
``AWS_*`` variables the ``s3_server`` fixture put into the environment; restores are
compared exactly with the source (``assert_same_tree``). Also: two processes backing up
into one remote store at the same time both succeed, the store stays consistent, and
shared content is deduplicated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from casbackup.store import Store, open_store
from tests.helpers import (
    PASSWORD,
    assert_same_tree,
    cli_env,
    json_lines,
    json_result,
    restored_root,
    run_cli,
    tree_state,
)

KINDS = ["local", "s3", "sftp"]


@pytest.fixture(params=KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "local-store")
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=["s3", "sftp"])
def remote_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def cli(
    url: str, *args: str, ok: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    p = run_cli(*args, "--store", url, timeout=timeout)
    if ok:
        assert p.returncode == 0, f"{args[0]} failed ({p.returncode}): {p.stderr.decode()[-2000:]}"
        assert b"Traceback" not in p.stderr
    return p


def json_out(p: subprocess.CompletedProcess[bytes], message_type: str) -> Any:
    """The one ``message_type`` line of a --json run (docs/json.md)."""
    return json_result(p.stdout, message_type)


def summary(p: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    return json_result(p.stdout)


def build_source(root: Path, seed: int = 0) -> None:
    rnd = __import__("random").Random(seed)
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "docs" / "readme.txt").write_text("hello remote stores\n" * 500)
    (root / "docs" / "deep" / "er" / "notes.md").write_text(
        "".join(f"line {i} {rnd.random()}\n" for i in range(20_000))
    )
    (root / "random.bin").write_bytes(rnd.randbytes(3 << 20))
    (root / "empty").write_bytes(b"")
    (root / "zeros-then-data.img").write_bytes(bytes(1 << 20) + rnd.randbytes(100_000))
    os.symlink("docs/readme.txt", root / "link")
    os.link(root / "random.bin", root / "docs" / "hardlink.bin")
    (root / "empty-dir").mkdir()
    os.chmod(root / "docs" / "readme.txt", 0o640)


def has_command(name: str) -> bool:
    return run_cli(name, "--help").returncode == 0


def test_every_command_round_trips(store_url: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    build_source(src)
    first_state = tree_state(src)

    init = json_out(cli(store_url, "init", "--json"), "initialized")
    assert init["encryption"] == "aes-256-gcm"
    assert len(init["id"]) >= 8

    s1 = summary(cli(store_url, "backup", str(src), "--json", "--tag", "one"))
    assert s1["snapshot_id"] and s1["parent"] is None

    # change the source: an incremental backup has the first as parent and adds little
    (src / "docs" / "readme.txt").write_text("changed\n")
    (src / "new.txt").write_text("new file\n")
    (src / "empty-dir" / "x").write_bytes(b"x" * 10)
    s2 = summary(cli(store_url, "backup", str(src), "--json"))
    assert s2["parent"] == s1["snapshot_id"]
    assert s2["data_added"] < 100_000

    snaps = json_lines(cli(store_url, "snapshots", "--json").stdout, "snapshot")
    assert [s["id"] for s in snaps] == [s1["snapshot_id"], s2["snapshot_id"]]
    assert all(s["paths"] == [str(src)] for s in snaps)
    assert snaps[0]["tags"] == ["one"]

    # exact restores of both snapshots
    t1, t2 = tmp_path / "r1", tmp_path / "r2"
    cli(store_url, "restore", s1["snapshot_id"][:8], str(t1))
    assert tree_state(restored_root(t1, src)) == first_state
    r2 = summary(cli(store_url, "restore", "latest", str(t2), "--json", "--verify"))
    assert r2["snapshot_id"] == s2["snapshot_id"] and r2["verified"]
    assert_same_tree(src, restored_root(t2, src))

    v = summary(cli(store_url, "verify", "--read-data", "--json"))
    assert v["ok"] and v["problems"] == [] and v["snapshots"] == 2 and v["packs_read"] >= 2

    cfg = json_out(cli(store_url, "cat", "config"), "object")["object"]
    assert cfg["store_id"] == init["id"]
    assert len(json_out(cli(store_url, "cat", "keys"), "object")["object"]) == 1
    ls = cli(store_url, "ls", "latest", str(src), "--recursive")
    assert b"new.txt" in ls.stdout

    if has_command("forget") and has_command("gc"):
        cli(store_url, "forget", "--keep-last", "1", "--json")
        cli(store_url, "gc", "--json")
        snaps = json_lines(cli(store_url, "snapshots", "--json").stdout, "snapshot")
        assert [s["id"] for s in snaps] == [s2["snapshot_id"]]
        v = summary(cli(store_url, "verify", "--read-data", "--json"))
        assert v["ok"], v["problems"]
        t3 = tmp_path / "r3"
        cli(store_url, "restore", "latest", str(t3))
        assert_same_tree(src, restored_root(t3, src))

    # a wrong password is refused with exit 12 on every backend, one line, no traceback
    p = run_cli("snapshots", "--store", store_url, env=cli_env(CASBACKUP_PASSWORD="wrong"))
    assert p.returncode == 12, p.stderr
    assert len(p.stderr.decode().strip().splitlines()) == 1


def test_missing_store_is_store_not_found(remote_url: str) -> None:
    p = cli(remote_url, "snapshots", ok=False)
    assert p.returncode == 10, p.stderr
    assert p.stderr.decode().startswith("casbackup: no casbackup store")


# -- concurrent writers -------------------------------------------------------------------


def _content(store: Store, src: Path, rel: str) -> list[bytes]:
    """The BlobIds the store's chunker and id key give a file's content."""
    with open(src / rel, "rb") as f:
        return [store.codec.blob_id(c) for c in store.chunker.cut_stream(f)]


def _copies(store: Store, blob_ids: list[bytes]) -> dict[bytes, int]:
    """How many packs named by the store's index objects hold each blob."""
    store.refresh_index()
    count = dict.fromkeys(blob_ids, 0)
    for pack in store.index.iter_packs():
        for e in pack.entries:
            if e.id in count:
                count[e.id] += 1
    return count


def _two_sources(tmp_path: Path, shared: bytes) -> tuple[Path, Path]:
    a, b = tmp_path / "host-a", tmp_path / "host-b"
    for i, d in enumerate((a, b)):
        (d / "sub").mkdir(parents=True)
        (d / "00-shared.bin").write_bytes(shared)
        (d / "sub" / "own.bin").write_bytes(os.urandom(2 << 20))
        (d / "sub" / f"only-{i}.txt").write_text(f"source {i}\n" * 1000)
    return a, b


def _backup(url: str, src: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "casbackup", "backup", str(src), "--store", url, "--json", *extra],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(p: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()[-2000:]
    return summary(subprocess.CompletedProcess(p.args, 0, out, err))


def test_concurrent_backups_share_a_remote_store(remote_url: str, tmp_path: Path) -> None:
    """Two processes started together: both succeed, the store is consistent, every
    blob is stored at most once per writer (a writer cannot see the other's uncommitted
    packs -- like restic), and a later backup stores no shared content again."""
    cli(remote_url, "init", "--pack-size", "1")
    shared = os.urandom(6 << 20)
    a, b = _two_sources(tmp_path, shared)
    pa, pb = _backup(remote_url, a, "--host", "a"), _backup(remote_url, b, "--host", "b")
    sa, sb = _finish(pa), _finish(pb)
    assert sa["snapshot_id"] != sb["snapshot_id"]

    with open_store(remote_url, lambda: PASSWORD) as st:
        ids = _content(st, a, "00-shared.bin")
        own = _content(st, a, "sub/own.bin") + _content(st, b, "sub/own.bin")
        copies = _copies(st, ids + own)
        assert all(1 <= copies[i] <= 2 for i in ids), copies
        assert all(copies[i] == 1 for i in own), copies
    v = summary(cli(remote_url, "verify", "--read-data", "--json"))
    assert v["ok"] and v["snapshots"] == 2, v
    for src, snap in ((a, sa), (b, sb)):
        t = tmp_path / f"restore-{src.name}"
        cli(remote_url, "restore", snap["snapshot_id"], str(t))
        assert_same_tree(src, restored_root(t, src))

    # a third source holding the shared file again adds nothing for it
    c = tmp_path / "host-c"
    c.mkdir()
    shutil.copyfile(a / "00-shared.bin", c / "shared-copy.bin")
    sc = summary(cli(remote_url, "backup", str(c), "--json"))
    assert sc["data_added"] < 10_000  # only the tree blobs


def test_overlapping_backup_dedups_against_indexed_work(remote_url: str, tmp_path: Path) -> None:
    """Writer B starts while A is still running, once A's index names the shared content:
    B stores none of it (dedup across processes and hosts through the shared index)."""
    cli(remote_url, "init", "--pack-size", "1")
    shared = os.urandom(9 << 20)  # > 8 packs of 1 MiB: A writes an index object for it
    a, b = _two_sources(tmp_path, shared)
    (a / "sub" / "own.bin").write_bytes(os.urandom(40 << 20))  # keeps A busy afterwards
    with open_store(remote_url, lambda: PASSWORD) as st:
        ids = _content(st, a, "00-shared.bin")
        pa = _backup(remote_url, a, "--host", "a")
        deadline = time.monotonic() + 60
        while min(_copies(st, ids).values()) == 0:
            assert time.monotonic() < deadline and pa.poll() is None, "A indexed nothing"
            time.sleep(0.05)
        pb = _backup(remote_url, b, "--host", "b")
        sb, sa = _finish(pb), _finish(pa)
        copies = _copies(st, ids)
    assert all(n == 1 for n in copies.values()), copies
    assert sb["data_added"] < len(shared) // 2, sb
    v = summary(cli(remote_url, "verify", "--json"))
    assert v["ok"] and v["snapshots"] == 2, v
    assert sa["snapshot_id"] and sb["snapshot_id"]
