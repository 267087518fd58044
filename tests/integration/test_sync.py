"""sync between paired stores (issue #5): pairing, copying only what is missing,
idempotence, the ``original`` chain, refusal of unpaired stores, selection, resume after
kill -9, other backends (memory, S3 via moto) and ``sync --watch``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.ops.snapsel import SnapshotFilter
from casbackup.ops.sync import Selection, SyncObserver, paired_key, sync
from casbackup.ops.sync_watch import sync_watch
from casbackup.ops.verify import verify
from casbackup.store import Store, init_store
from tests.helpers import (
    FAST_KDF,
    PASSWORD,
    assert_same_tree,
    cli_env,
    json_result,
    make_store,
    open_test_store,
    restored_root,
    run_cli,
)


def paired(src: Store, url: str | Path, **kw: Any) -> Store:
    master, chunker = paired_key(src)
    return init_store(str(url), PASSWORD, kdf_n=FAST_KDF, master=master, chunker=chunker, **kw)


def source(root: Path, files: int = 30, big_mib: int = 0) -> Path:
    (root / "sub" / "deep").mkdir(parents=True)
    for i in range(files):
        (root / ("sub" if i % 2 else "sub/deep") / f"f{i}.txt").write_text(f"file {i}\n" * i)
    for i in range(big_mib):
        (root / f"big{i}.bin").write_bytes(os.urandom(1 << 20))
    os.symlink("sub/f1.txt", root / "link")
    return root


def snap(st: Store, src: Path, **kw: Any) -> str:
    return backup(st, [str(src)], BackupOptions(**kw)).snapshot.id


def check_replica(st: Store, src: Path, tmp: Path, ref: str = "latest") -> None:
    rep = verify(st, read_data=True)
    assert rep.ok, rep.problems
    out = tmp / f"restore-{time.monotonic_ns()}"
    restore(st, ref, str(out))
    assert_same_tree(src, restored_root(out, src))


# ----- pairing -----------------------------------------------------------------------------


def test_init_from_pairs_stores(tmp_path: Path) -> None:
    a = make_store(tmp_path / "a")
    a.close()
    for name, extra in (("b", []), ("c", ["--copy-master-key"]),
                        ("d", ["--encryption", "none"])):
        r = run_cli("init", "--store", str(tmp_path / name), "--from", str(tmp_path / "a"),
                    *extra, "--json")
        assert r.returncode == 0, r.stderr
        assert json_result(r.stdout, "initialized")["paired_with"] == str(tmp_path / "a")
    a, b, c = (open_test_store(tmp_path / n) for n in "abc")
    d = open_test_store(tmp_path / "d")
    for s in (b, c, d):
        assert s.codec.id_key == a.codec.id_key
        assert s.config.chunker == a.config.chunker
    assert b.master.enc_key != a.master.enc_key and c.master == a.master
    assert not d.config.encrypted
    r = run_cli("init", "--store", str(tmp_path / "e"), "--copy-master-key")
    assert r.returncode == 2 and b"--from" in r.stderr


def test_unpaired_stores_are_refused(tmp_path: Path) -> None:
    a, b = make_store(tmp_path / "a"), make_store(tmp_path / "b")
    snap(a, source(tmp_path / "src"))
    a.close()
    b.close()
    r = run_cli("sync", str(tmp_path / "a"), str(tmp_path / "b"))
    assert r.returncode == 2, r.stderr
    assert b"not paired" in r.stderr and b"init --store DST --from SRC" in r.stderr
    assert not list((tmp_path / "b").glob("snapshots/*"))


# ----- copying -----------------------------------------------------------------------------


def test_sync_copies_missing_blobs_once_and_is_idempotent(tmp_path: Path) -> None:
    src = source(tmp_path / "src", big_mib=3)
    a = make_store(tmp_path / "a")
    b = paired(a, tmp_path / "b")
    s1 = snap(a, src)
    (src / "sub" / "f1.txt").write_text("changed\n")
    s2 = snap(a, src)
    res = sync(a, b)
    assert [c.src_id for c in res.copied] == [s1, s2] and res.present == 0
    second = res.copied[1]
    chain = len((src / "sub").parts)  # the trees from the root down to sub/ are new
    assert second.blobs <= 1 + chain, "the second snapshot shares all but the changed file"
    assert {s.original for s in b.snapshots()} == {s1, s2}
    assert b.snapshots()[1].parent == res.copied[0].dst_id  # parent mapped to its copy
    check_replica(b, src, tmp_path)
    again = sync(a, b)
    assert again.copied == [] and again.present == 2
    # CLI: same answer, as JSON
    a.close()
    b.close()
    r = run_cli("sync", str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    assert r.returncode == 0, r.stderr
    summary = json_result(r.stdout)
    assert summary["copied"] == 0 and summary["already_present"] == 2


def test_original_chain_never_copies_twice(tmp_path: Path) -> None:
    src = source(tmp_path / "src")
    a = make_store(tmp_path / "a")
    b, c = paired(a, tmp_path / "b"), paired(a, tmp_path / "c")
    s1 = snap(a, src)
    assert len(sync(a, b).copied) == 1
    assert len(sync(b, c).copied) == 1  # c holds the copy of b's copy of s1
    assert sync(a, c).copied == []  # ... which is s1: not copied again
    assert sync(c, a).copied == [] and sync(b, a).copied == []  # nor back into its origin
    assert [s.original for s in c.snapshots()] == [s1]


def test_selection(tmp_path: Path) -> None:
    src = source(tmp_path / "src")
    other = source(tmp_path / "other", files=3)
    a = make_store(tmp_path / "a")
    b = paired(a, tmp_path / "b")
    s1 = snap(a, src, tags=["daily"])
    s2 = snap(a, other, host="elsewhere")
    s3 = snap(a, src)
    assert [c.src_id for c in sync(a, b, Selection(ids=[s2[:8]])).copied] == [s2]
    daily, elsewhere = SnapshotFilter.of(tags=["daily"]), SnapshotFilter.of(["elsewhere"])
    assert [c.src_id for c in sync(a, b, Selection(filt=daily)).copied] == [s1]
    assert [c.src_id for c in sync(a, b, Selection(ids=["latest"], filt=elsewhere)).copied
            ] == []  # s2 is already there
    assert sync(a, b, Selection(filt=SnapshotFilter.of(paths=[str(other)]))).copied == []
    assert [c.src_id for c in sync(a, b, Selection(ids=["latest"])).copied] == [s3]


def test_memory_backends(tmp_path: Path) -> None:
    src = source(tmp_path / "src")
    a = make_store("memory://sync-a")
    b = paired(a, "memory://sync-b")
    snap(a, src)
    assert len(sync(a, b).copied) == 1
    check_replica(b, src, tmp_path)


def test_s3_and_local(tmp_path: Path, s3_server: Any) -> None:
    src = source(tmp_path / "src", big_mib=2)
    s3 = make_store(s3_server.url(f"sync-{time.time_ns()}"))
    local = paired(s3, tmp_path / "local")
    back = paired(local, s3_server.url(f"sync-back-{time.time_ns()}"))
    snap(s3, src)
    assert len(sync(s3, local).copied) == 1  # S3 -> local
    check_replica(local, src, tmp_path)
    (src / "sub" / "new").write_text("new\n")
    snap(local, src)
    assert len(sync(local, back).copied) == 2  # local -> S3
    check_replica(back, src, tmp_path)


# ----- crash safety ------------------------------------------------------------------------


def _big_pair(tmp_path: Path, mib: int) -> tuple[Path, Store]:
    src = source(tmp_path / "src", big_mib=mib)
    a = make_store(tmp_path / "a")
    snap(a, src)
    paired(a, tmp_path / "b", pack_size=1 << 20).close()  # many packs, index every 8
    a.load_index()
    return src, a


def _rerun_and_check(tmp_path: Path, src: Path, total_blobs: int) -> int:
    """Rerun the sync after a kill; returns how many blobs the rerun had to copy."""
    packs_before = {p.name for p in (tmp_path / "b" / "packs").rglob("*")
                    if p.is_file() and not p.name.startswith(".")}
    assert not list((tmp_path / "b").glob("snapshots/*")), "the snapshot is the commit point"
    r = run_cli("sync", str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    assert r.returncode == 0, r.stderr
    summary = json_result(r.stdout)
    assert summary["copied"] == 1
    b = open_test_store(tmp_path / "b")
    b.load_full_index()
    assert packs_before & set(b.index.packs), "packs indexed before the kill are reused"
    assert summary["blobs"] < total_blobs
    check_replica(b, src, tmp_path)
    return int(summary["blobs"])


@pytest.mark.parametrize("point", ["packer:after-index:1", "sync:before-snapshot"])
def test_resume_after_kill9_at_point(tmp_path: Path, point: str) -> None:
    src, a = _big_pair(tmp_path, 16)
    r = run_cli("sync", str(tmp_path / "a"), str(tmp_path / "b"),
                env=cli_env(CASBACKUP_TEST_CRASH_AT=point))
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert list((tmp_path / "b").glob("index/*")), "some work was indexed before the kill"
    again = _rerun_and_check(tmp_path, src, len(a.index))
    if point == "sync:before-snapshot":
        assert again == 0, "everything was flushed before the snapshot: nothing to resend"


def test_resume_after_kill9_from_outside(tmp_path: Path) -> None:
    src, a = _big_pair(tmp_path, 64)
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", "sync", str(tmp_path / "a"),
                             str(tmp_path / "b")], env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if [p for p in (tmp_path / "b").glob("index/*") if not p.name.startswith(".")]:
            break
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.skip("sync finished before it could be killed")
    _rerun_and_check(tmp_path, src, len(a.index))


# ----- sync --watch ------------------------------------------------------------------------


def _lines(proc: subprocess.Popen[bytes], want: int, timeout: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        obj = json.loads(line)
        if obj["message_type"] != "status":  # each sync round reports its progress
            out.append(obj)
    return out


def test_sync_watch_local_follows_new_snapshots(tmp_path: Path) -> None:
    src = source(tmp_path / "src")
    a = make_store(tmp_path / "a")
    paired(a, tmp_path / "b").close()
    snap(a, src)
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", "sync", "--watch", "--json",
                             str(tmp_path / "a"), str(tmp_path / "b")], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert [x["message_type"] for x in _lines(proc, 1, 15)] == ["copied"]
        for i in range(2):
            (src / f"n{i}").write_text(f"new {i}\n")
            t0 = time.monotonic()
            sid = snap(a, src)
            got = _lines(proc, 1, 15)
            assert got and got[0]["source_id"] == sid
            assert time.monotonic() - t0 < 5, "watchdog, not the 10 s poll, woke the sync"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    check_replica(open_test_store(tmp_path / "b"), src, tmp_path)


def test_sync_watch_polls_other_backends(tmp_path: Path) -> None:
    src = source(tmp_path / "src")
    a = make_store("memory://watch-a")
    b = paired(a, "memory://watch-b")
    stop = threading.Event()
    seen: list[str] = []

    class Obs(SyncObserver):
        def copied(self, copied: Any, snapshot: Any) -> None:
            seen.append(copied.src_id)

    t = threading.Thread(target=sync_watch, args=(a, b, Selection(), Obs(), stop, 0.2))
    t.start()
    try:
        ids = []
        for _ in range(2):
            ids.append(snap(a, src))
            deadline = time.monotonic() + 60
            while ids[-1] not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
        assert seen == ids
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
