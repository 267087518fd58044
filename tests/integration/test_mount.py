"""``casbackup mount`` (issue #14 item 6) with real FUSE mounts of real stores, served by
the real CLI in its own process: the mounted snapshots equal what restore makes, byte for
byte and in metadata (modes, owners, ns mtimes, xattrs, symlinks, hard links, devices),
for an exotic tree and for generated ones; the layout (snapshots/, ids/, hosts/, tags/,
latest); new snapshots appear; a 1 GiB file is read with a bounded RSS and random reads
fetch only the blobs they touch; SIGINT, SIGTERM and ``fusermount3 -u`` unmount and
release the lock, also with a reader in the middle of a file; gc beside a mount does not
delete data the mount can still read; a crafted tree is EIO, not a crash; a mount point
that is not an empty directory (/proc/self) or a dead mount left by kill -9 is one line
and exit 2 at once, and gc deletes what the killed mount held; names that are not UTF-8
or hold newlines list and read; a damaged tree or data blob is EIO with one warning each
while the rest is served.

The tests skip only where /dev/fuse or the binding is absent, and fail in CI there."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup import serde
from casbackup.crypto.codec import DATA, TREE
from casbackup.model.snapshot import Snapshot
from casbackup.model.tree import DIR, FILE, Node, Tree
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.ops.snapsel import locate
from tests.conftest import require
from tests.helpers import cli_env, make_store, open_test_store, restored_root, run_cli, tree_state
from tests.integration.test_roundtrip import build_exotic_tree


def _fuse_ok() -> tuple[bool, str]:
    try:
        from casbackup.mount import fuse

        fuse.check_available()
    except Exception as e:  # FuseUnavailable
        return False, str(e)
    return True, ""


@pytest.fixture(autouse=True)
def _need_fuse() -> None:
    ok, why = _fuse_ok()
    require(ok, f"mount tests need FUSE: {why}")


def _unmount(mnt: Path) -> None:
    # (also a dead mount, which os.path.ismount does not see: its stat fails)
    subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


class Mounted:
    def __init__(self, proc: subprocess.Popen[bytes], mnt: Path, log: Path) -> None:
        self.proc, self.mnt, self.log = proc, mnt, log

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@contextlib.contextmanager
def mounted(store: Path, mnt: Path, *args: str, launcher: list[str] | None = None,
            env: dict[str, str] | None = None) -> Iterator[Mounted]:
    """``casbackup mount`` of STORE at MNT in its own process, until the block ends."""
    mnt.mkdir(exist_ok=True)
    log = mnt.parent / f"{mnt.name}.log"
    cmd = [*(launcher or [sys.executable, "-m", "casbackup"]), "mount", "--store", str(store),
           str(mnt), *args]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, env=env or cli_env(), stdout=subprocess.DEVNULL,
                                stderr=err)
    m = Mounted(proc, mnt, log)
    try:
        deadline = time.monotonic() + 60
        while not os.path.ismount(mnt):
            if proc.poll() is not None:
                raise AssertionError(f"mount exited {proc.returncode}: {m.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not mounted after 60 s: {m.stderr()}")
            time.sleep(0.05)
        yield m
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _unmount(mnt)


def _wait(pred: object, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _locks(store: Path) -> list[str]:
    return os.listdir(store / "locks") if (store / "locks").exists() else []


# -- the tree as restore makes it ------------------------------------------------------


@pytest.fixture(scope="module")
def exotic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, str]:
    """(store, source, the tree restore made of it, snapshot id)."""
    tmp = tmp_path_factory.mktemp("mount")
    src = tmp / "src"
    build_exotic_tree(src)
    st = make_store(tmp / "store")
    snap = backup(st, [str(src)], BackupOptions(tags=["daily", "a/b"])).snapshot
    st.close()
    st = open_test_store(tmp / "store")
    restore(st, "latest", str(tmp / "restored"))
    st.close()
    return tmp / "store", src, restored_root(tmp / "restored", src), snap.id


def test_mounted_snapshot_equals_the_restored_tree(
        exotic: tuple[Path, Path, Path, str], tmp_path: Path) -> None:
    store, src, restored, sid = exotic
    with mounted(store, tmp_path / "mnt") as m:
        top = m.mnt / "snapshots"
        names = sorted(os.listdir(top))
        assert len(names) == 2 and names[1] == "latest"
        assert os.readlink(top / "latest") == names[0]
        assert names[0] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(
            int(open_test_store(store).load_snapshot(sid).time)))
        rel = str(src).lstrip("/")
        want = tree_state(restored)
        for view in (top / names[0], top / "latest", m.mnt / "ids" / sid[:8],
                     m.mnt / "hosts" / socket.gethostname() / "latest",
                     m.mnt / "tags" / "daily" / names[0], m.mnt / "tags" / "a_b" / "latest"):
            assert tree_state(view / rel) == want, view
        assert sorted(os.listdir(m.mnt)) == ["hosts", "ids", "snapshots", "tags"]
        # hard links share an inode within the snapshot; the mount is read-only
        f = top / "latest" / rel
        a, b = os.stat(f / "hl-a"), os.stat(f / "sub" / "hl-c")
        assert (a.st_ino, a.st_nlink) == (b.st_ino, 3)
        with pytest.raises(OSError) as e:
            os.open(f / "regular.txt", os.O_RDWR)
        assert e.value.errno == errno.EROFS
        # ... and cp -a out of it makes the restored tree again (but deep/: its paths are
        # longer than cp can handle, on any filesystem)
        out = tmp_path / "copy"
        out.mkdir()
        names = [n for n in os.listdir(f) if n != "deep"]
        subprocess.run(["cp", "-a", *(str(f / n) for n in names), str(out)], check=True)
        assert tree_state(out) == {k: v for k, v in want.items()
                                   if not k.startswith(b"deep")}
        assert m.stop() == 0
    assert "unmounted" in m.stderr()
    assert _locks(store) == []


_files = st.dictionaries(
    st.sampled_from(["a", "b", "c.txt", "d\xe9", "e e", "f\nx"]),
    st.tuples(st.binary(max_size=3000), st.sampled_from([0o644, 0o600, 0o755, 0o4755]),
              st.integers(0, 2**40), st.booleans()),
    max_size=4)
# a directory: files, and subdirectories (keys starting with "/")
_trees = st.recursive(_files, lambda sub: st.tuples(_files, st.dictionaries(
    st.sampled_from(["dir1", "dir2", "sub"]), sub, max_size=2)).map(
        lambda t: {**t[0], **{"/" + k: v for k, v in t[1].items()}}), max_leaves=8)


def _write_tree(root: Path, spec: dict, n: list[int]) -> None:  # type: ignore[type-arg]
    root.mkdir(parents=True, exist_ok=True)
    for name, v in spec.items():
        if name.startswith("/"):
            _write_tree(root / name[1:], v, n)
            continue
        data, mode, mtime, linked = v
        p = root / name
        p.write_bytes(data)
        os.chmod(p, mode)
        os.setxattr(p, b"user.n", b"%d" % n[0])
        os.utime(p, ns=(mtime, mtime))
        n[0] += 1
        if linked:
            os.link(p, root / (name + ".hl"))
            os.symlink(name, root / (name + ".ln"))


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_trees, min_size=1, max_size=3))
def test_generated_trees_mount_as_they_restore(tmp_path_factory: pytest.TempPathFactory,
                                               specs: list[dict]) -> None:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("gen")
    st_ = make_store(tmp / "store")
    srcs = []
    for i, spec in enumerate(specs):
        src = tmp / f"src{i}"
        _write_tree(src, spec, [0])
        backup(st_, [str(src)], BackupOptions(time=1_700_000_000.0 + i))
        srcs.append(src)
    st_.close()
    with mounted(tmp / "store", tmp / "mnt") as m:
        for i, src in enumerate(srcs):
            st_ = open_test_store(tmp / "store")
            target = tmp / f"restored{i}"
            snap = sorted(st_.snapshots(), key=lambda s: s.time)[i]
            restore(st_, snap.id, str(target))
            st_.close()
            name = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + i))
            view = m.mnt / "snapshots" / name / str(src).lstrip("/")
            assert tree_state(view) == tree_state(restored_root(target, src))


# -- new snapshots, signals, unmounting --------------------------------------------------


def test_new_snapshots_appear_and_latest_follows(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("one")
    st_ = make_store(tmp_path / "store")
    backup(st_, [str(src)], BackupOptions(time=1_700_000_000.0))
    with mounted(tmp_path / "store", tmp_path / "mnt", "--refresh", "0.2") as m:
        latest = m.mnt / "snapshots" / "latest"
        assert (latest / str(src / "f").lstrip("/")).read_text() == "one"
        (src / "f").write_text("two")
        backup(st_, [str(src)], BackupOptions(time=1_700_000_100.0, tags=["new"]))
        _wait(lambda: len(os.listdir(m.mnt / "snapshots")) == 3, what="the new snapshot")
        _wait(lambda: (latest / str(src / "f").lstrip("/")).read_text() == "two",
              what="latest to move")
        assert os.listdir(m.mnt / "tags") == ["new"]
        # a forgotten snapshot leaves the listing
        old = st_.snapshots()[0]
        st_.delete_snapshot(old.id)
        _wait(lambda: len(os.listdir(m.mnt / "ids")) == 1, what="the forgotten one to go")
    st_.close()


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "fusermount3 -u"])
def test_unmounts_cleanly_and_releases_its_lock(tmp_path: Path, how: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    st_ = make_store(tmp_path / "store")
    backup(st_, [str(src)], BackupOptions())
    st_.close()
    store = tmp_path / "store"
    with mounted(store, tmp_path / "mnt") as m:
        assert len(_locks(store)) == 1  # the reader lock, held while mounted
        if how == "fusermount3 -u":
            subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True)
            rc = m.proc.wait(30)
        else:
            rc = m.stop(getattr(signal, how))
        assert rc == 0, m.stderr()
        assert not os.path.ismount(m.mnt)
        assert _locks(store) == []
        assert m.stderr().rstrip().endswith(f"casbackup: unmounted {m.mnt}")
        assert "Traceback" not in m.stderr()


def test_the_reader_lock_is_refreshed_while_mounted(tmp_path: Path) -> None:
    st_ = make_store(tmp_path / "store")
    st_.close()
    store = tmp_path / "store"
    # STALE 5 s: the heartbeat rewrites the lock every 0.5 s
    with mounted(store, tmp_path / "mnt", env=cli_env(CASBACKUP_TEST_LOCK_STALE="5")):
        first = _locks(store)
        assert len(first) == 1
        _wait(lambda: _locks(store) and _locks(store) != first, timeout=20,
              what="a heartbeat")  # (for a moment two: the new one is written first)
    assert _locks(store) == []


def test_host_and_tag_select_the_snapshots_shown(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    st_ = make_store(tmp_path / "store")
    a = backup(st_, [str(src)], BackupOptions(host="web1", tags=["x"], time=1e9)).snapshot
    backup(st_, [str(src)], BackupOptions(host="web2", tags=["x"], time=1e9 + 1))
    backup(st_, [str(src)], BackupOptions(host="web1", time=1e9 + 2))
    st_.close()
    with mounted(tmp_path / "store", tmp_path / "mnt", "--host", "web1", "--tag", "x") as m:
        assert os.listdir(m.mnt / "ids") == [a.id[:8]]
        assert os.listdir(m.mnt / "hosts") == ["web1"]
        assert sorted(os.listdir(m.mnt / "tags" / "x")) == ["2001-09-09T01:46:40Z", "latest"]
    with mounted(tmp_path / "store", tmp_path / "mnt", "--tag", "nope") as m:
        assert os.listdir(m.mnt / "ids") == []
    assert "warning: no snapshot matches --tag nope yet" in m.stderr()


_SLOW_READER = textwrap.dedent("""
    import sys, time
    with open(sys.argv[1], "rb", buffering=0) as f:
        n = 0
        try:
            while True:
                b = f.read(65536)
                if not b:
                    print("EOF", n, flush=True); break
                n += len(b)
                if n == 65536:
                    print("reading", flush=True)
                time.sleep(0.01)
        except OSError as e:
            print("error", e.errno, n, flush=True)
""")


def test_sigterm_while_a_process_reads_a_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(64 << 20))
    st_ = make_store(tmp_path / "store")
    backup(st_, [str(src)], BackupOptions())
    st_.close()
    store = tmp_path / "store"
    with mounted(store, tmp_path / "mnt") as m:
        f = m.mnt / "snapshots" / "latest" / str(src / "big").lstrip("/")
        reader = subprocess.Popen([sys.executable, "-c", _SLOW_READER, str(f)],
                                  stdout=subprocess.PIPE, text=True)
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "reading"
        t0 = time.monotonic()
        assert m.stop(signal.SIGTERM) == 0, m.stderr()
        assert time.monotonic() - t0 < 20
        out, _ = reader.communicate(timeout=30)
        # the reader is not left hanging: its next read fails (the mount is gone)
        word, code, n = out.split()
        assert word == "error" and int(code) in (errno.ENOTCONN, errno.EIO, errno.ENODEV), out
        assert 0 < int(n) < 64 << 20
        assert not os.path.ismount(m.mnt)
        assert _locks(store) == []


# -- big files: memory and range reads -------------------------------------------------

_COUNTING = textwrap.dedent("""
    import sys
    from casbackup.store.store import Store
    log = open(sys.argv[1], "a", buffering=1)
    real = Store.get_blob
    def counted(self, blob_id):
        log.write(blob_id.hex() + "\\n")
        return real(self, blob_id)
    Store.get_blob = counted
    from casbackup.cli.app import main
    sys.argv = ["casbackup", *sys.argv[2:]]
    main()
""")


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_1gib_file_reads_with_bounded_memory_and_random_reads_fetch_only_their_blobs(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    digest = hashlib.blake2b()
    with open(src / "big", "wb") as out:
        for _ in range(16):
            chunk = os.urandom(64 << 20)
            digest.update(chunk)
            out.write(chunk)
    st_ = make_store(tmp_path / "store", encryption="none")
    snap = backup(st_, [str(src)], BackupOptions()).snapshot
    node = locate(st_.load_tree, snap, str(src / "big")).node
    assert node is not None and node.content is not None
    lengths = [st_.locate(b).entry.raw_length for b in node.content]
    st_.close()
    starts = [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    assert len(lengths) > 100
    # random reads of 4 KiB in the middle of 8 blobs (the kernel reads ahead at most
    # 128 KiB: still inside the blob)
    rng = random.Random(7)
    picked = sorted(rng.sample([i for i in range(1, len(lengths) - 1)
                                if lengths[i] >= 1 << 20], 8))
    fetched = tmp_path / "fetched"
    launcher = [sys.executable, "-c", _COUNTING, str(fetched)]
    with mounted(tmp_path / "store", tmp_path / "mnt", launcher=launcher) as m:
        f = m.mnt / "snapshots" / "latest" / str(src / "big").lstrip("/")
        assert os.stat(f).st_size == 1 << 30
        fd = os.open(f, os.O_RDONLY)
        with open(src / "big", "rb") as orig:
            for i in picked:
                off = starts[i] + lengths[i] // 2 - (200 << 10)
                assert off > starts[i] and off + (400 << 10) < starts[i + 1]
                orig.seek(off)
                assert os.pread(fd, 4096, off) == orig.read(4096)
        os.close(fd)
        ids = {b.hex(): i for i, b in enumerate(node.content)}
        got = [ids[h] for h in fetched.read_text().split() if h in ids]
        assert got == picked  # exactly the blobs touched, each once
        before = _vm_hwm(m.proc.pid)
        # a whole cat: every byte right, and the server's peak RSS stays far below 1 GiB
        h = hashlib.blake2b()
        with subprocess.Popen(["cat", str(f)], stdout=subprocess.PIPE) as cat:
            assert cat.stdout is not None
            while b := cat.stdout.read(1 << 20):
                h.update(b)
        assert h.hexdigest() == digest.hexdigest()
        peak = _vm_hwm(m.proc.pid)
        print(f"mount server peak RSS: {peak >> 20} MiB after reading 1 GiB")
        assert peak < 400 << 20, (before, peak)
        got = [ids[h] for h in fetched.read_text().split() if h in ids]
        assert sorted(set(got)) == list(range(len(lengths)))


# -- gc beside a mount, crafted trees, bad input ----------------------------------------


def _packs(store: Path) -> set[str]:
    return {p.name for p in (store / "packs").rglob("*") if p.is_file()}


def test_gc_beside_a_mount_keeps_what_the_mount_reads(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 << 20)
    (src / "f").write_bytes(data)
    st_ = make_store(tmp_path / "store")
    snap = backup(st_, [str(src)], BackupOptions()).snapshot
    st_.close()
    store = tmp_path / "store"
    with mounted(store, tmp_path / "mnt", "--refresh", "0") as m:
        fd = os.open(m.mnt / "ids" / snap.id[:8] / str(src / "f").lstrip("/"), os.O_RDONLY)
        try:
            r = run_cli("forget", "--store", str(store), snap.id)
            assert r.returncode == 0, r.stderr
            before = _packs(store)
            r = run_cli("gc", "--store", str(store), "--max-wait", "1s")
            assert r.returncode == 0, r.stderr
            assert _packs(store) == before  # condemned, but the mount's session holds them
            assert os.pread(fd, len(data) + 1, 0) == data
            assert os.listdir(m.mnt / "ids") == []  # gone from the listing
        finally:
            os.close(fd)
    # once unmounted, gc deletes them (so the check above could fail)
    r = run_cli("gc", "--store", str(store), "--max-wait", "1s")
    assert r.returncode == 0, r.stderr
    assert _packs(store) < before


def test_a_crafted_tree_is_eio_and_the_mount_goes_on(tmp_path: Path) -> None:
    st_ = make_store(tmp_path / "store", encryption="none")
    data = st_.add_blob(DATA, b"hello\n").id
    ok = Node(b"ok.txt", FILE, mode=0o644, size=6, content=[data])
    bad = st_.add_blob(TREE, serde.pack({"nodes": [
        {"name": b"..", "type": FILE}, {"name": b"a/b", "type": FILE}]})).id
    good = st_.add_blob(TREE, Tree([ok]).encode()).id
    for t, sub in ((1_700_000_000.0, good), (1_700_000_100.0, bad)):
        root = st_.add_blob(TREE, Tree([Node(b"home", DIR, mode=0o755, subtree=sub)]).encode())
        st_.save_snapshot(Snapshot(t, "h", "u", ["/home"], root.id, type="full"))
    st_.close()
    with mounted(tmp_path / "store", tmp_path / "mnt") as m:
        snaps = m.mnt / "snapshots"
        with pytest.raises(OSError) as e:
            os.listdir(snaps / "latest" / "home")
        assert e.value.errno == errno.EIO
        assert (snaps / "2023-11-14T22:13:20Z" / "home" / "ok.txt").read_bytes() == b"hello\n"
        assert m.proc.poll() is None  # still serving
        assert m.stop() == 0
    lines = [ln for ln in m.stderr().splitlines() if "warning" in ln]
    assert len(lines) == 1 and bad.hex()[:16] in lines[0] and "/home" in lines[0], lines
    assert "Traceback" not in m.stderr()


def test_bad_mount_points_and_missing_fuse_are_one_line(tmp_path: Path) -> None:
    st_ = make_store(tmp_path / "store")
    st_.close()
    store = str(tmp_path / "store")
    r = run_cli("mount", "--store", store, str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.decode().strip() == (
        f"casbackup: mount point {tmp_path / 'nope'} does not exist")
    (tmp_path / "file").write_text("")
    r = run_cli("mount", "--store", store, str(tmp_path / "file"))
    assert r.returncode == 2 and b"is not a directory" in r.stderr
    (tmp_path / "mnt").mkdir()
    r = run_cli("mount", "--store", store, str(tmp_path / "mnt"),
                env=cli_env(FUSE_LIBRARY_NAME="no-such-fuse-library"))
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "casbackup[mount]" in lines[0] and "fuse3" in lines[0]
    assert _locks(tmp_path / "store") == []


def test_check_available_names_a_missing_dev_fuse(tmp_path: Path) -> None:
    from casbackup.mount.fuse import FuseUnavailable, check_available

    with pytest.raises(FuseUnavailable, match="is missing"):
        check_available(str(tmp_path / "fuse"))
    (tmp_path / "plain").write_text("")
    with pytest.raises(FuseUnavailable, match="not a character device"):
        check_available(str(tmp_path / "plain"))


# -- the attacks of wave 3: odd mount points, kill -9, odd names, damaged trees ---------


def test_a_mount_point_that_is_not_an_empty_directory_is_refused_at_once(
        tmp_path: Path) -> None:
    st_ = make_store(tmp_path / "store")
    st_.close()
    store = str(tmp_path / "store")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    # /proc/self: not empty (mounting there used to hang the mount's own process)
    for bad, why in ((str(full), "is not empty"), ("/proc/self", "is not empty")):
        t0 = time.monotonic()
        r = run_cli("mount", "--store", store, bad, timeout=60)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and why in lines[0], r.stderr
        assert time.monotonic() - t0 < 30
    assert os.listdir(full) == ["x"] and _locks(tmp_path / "store") == []
    with mounted(tmp_path / "store", tmp_path / "mnt") as m:
        r = run_cli("mount", "--store", store, str(m.mnt))
        assert r.returncode == 2 and b"is already a mount point" in r.stderr, r.stderr


def test_kill_9_leaves_a_dead_mount_that_the_next_mount_names_and_gc_goes_on(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(3 << 20))
    st_ = make_store(tmp_path / "store")
    snap = backup(st_, [str(src)], BackupOptions()).snapshot
    st_.close()
    store = tmp_path / "store"
    with mounted(store, tmp_path / "mnt", "--refresh", "0") as m:
        assert (m.mnt / "ids" / snap.id[:8] / str(src / "f").lstrip("/")).stat().st_size
        assert run_cli("forget", "--store", str(store), snap.id).returncode == 0
        before = _packs(store)
        r = run_cli("gc", "--store", str(store), "--max-wait", "1s")
        assert r.returncode == 0 and _packs(store) == before, r.stderr  # the mount holds them
        m.proc.kill()
        m.proc.wait(30)
        with pytest.raises(OSError) as e:
            os.listdir(m.mnt)
        assert e.value.errno == errno.ENOTCONN  # a dead mount: its server is gone
        assert len(_locks(store)) == 1  # and so is its lock's holder
        # the next mount there says what to do, at once, and opens nothing
        r = run_cli("mount", "--store", str(store), str(m.mnt), timeout=60)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert "dead FUSE mount" in lines[0] and f"fusermount3 -u {m.mnt}" in lines[0]
        # gc is not held up by the killed mount's lock: its holder is provably dead
        r = run_cli("gc", "--store", str(store), "--max-wait", "1s")
        assert r.returncode == 0, r.stderr
        assert _packs(store) < before
        subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True)
        assert os.listdir(m.mnt) == []
    with mounted(store, tmp_path / "mnt") as m:  # and the mount point serves again
        assert sorted(os.listdir(m.mnt)) == ["hosts", "ids", "snapshots", "tags"]


def test_names_that_are_not_utf8_or_hold_newlines_list_and_read(tmp_path: Path) -> None:
    src = tmp_path / "src"
    d = bytes(src) + b"/dir-\xff\nx"
    os.makedirs(d)
    files = {b"caf\xe9": b"latin-1", b"two\nlines": b"newline", b"\x01\x7f \t": b"ctl",
             "ünï".encode(): b"utf-8"}
    for name, data in files.items():
        with open(d + b"/" + name, "wb") as f:
            f.write(data)
    os.setxattr(d + b"/caf\xe9", b"user.\xfe\n", b"v\xff")
    os.symlink(b"caf\xe9", d + b"/link-\xfd")
    many = src / "many"  # a listing the kernel asks for in several requests
    many.mkdir()
    for i in range(500):
        (many / f"{i:04d}-{'x' * 60}").write_bytes(b"y" * i)
    st_ = make_store(tmp_path / "store")
    backup(st_, [str(src)], BackupOptions())
    st_.close()
    with mounted(tmp_path / "store", tmp_path / "mnt") as m:
        top = bytes(m.mnt) + b"/snapshots/latest" + bytes(src)
        assert sorted(os.listdir(top)) == [b"dir-\xff\nx", b"many"]
        with os.scandir(top + b"/many") as it:
            sizes = sorted((e.name, e.stat(follow_symlinks=False).st_size) for e in it)
        assert sizes == [(f"{i:04d}-{'x' * 60}".encode(), i) for i in range(500)]
        view = top + b"/dir-\xff\nx"
        assert sorted(os.listdir(view)) == sorted([*files, b"link-\xfd"])
        for name, data in files.items():
            with open(view + b"/" + name, "rb") as f:
                assert f.read() == data
        assert os.listxattr(view + b"/caf\xe9") == ["user.\udcfe\n"]
        assert os.getxattr(view + b"/caf\xe9", b"user.\xfe\n") == b"v\xff"
        assert os.readlink(view + b"/link-\xfd") == b"caf\xe9"
        with open(view + b"/link-\xfd", "rb") as f:
            assert f.read() == b"latin-1"
        # find prints every name, byte for byte (-print0: names may hold newlines)
        out = subprocess.run(["find", view, "-print0"], capture_output=True, check=True)
        assert sorted(out.stdout.split(b"\0")[1:-1]) == sorted(
            view + b"/" + n for n in [*files, b"link-\xfd"])


def test_a_damaged_tree_or_blob_is_eio_with_one_warning_and_the_rest_is_served(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    for sub in ("good", "bad", "worse"):
        (src / sub).mkdir(parents=True)
        (src / sub / "f").write_bytes(sub.encode() * 1000)
    st_ = make_store(tmp_path / "store")
    snap = backup(st_, [str(src)], BackupOptions()).snapshot
    bad_tree = locate(st_.load_tree, snap, str(src / "bad")).node
    worse = locate(st_.load_tree, snap, str(src / "worse" / "f")).node
    assert bad_tree is not None and bad_tree.subtree is not None
    assert worse is not None and worse.content
    for blob in (bad_tree.subtree, worse.content[0]):
        loc = st_.locate(blob)
        (pack,) = (tmp_path / "store" / "packs").rglob(loc.pack)
        with open(pack, "r+b") as f:  # one byte flipped in the middle of the sealed blob
            f.seek(loc.entry.offset + loc.entry.length // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
    st_.close()
    # --no-cache: the tree comes from the pack (the backup left a good copy in the cache)
    with mounted(tmp_path / "store", tmp_path / "mnt", "--no-cache") as m:
        view = m.mnt / "snapshots" / "latest" / str(src).lstrip("/")
        assert sorted(os.listdir(view)) == ["bad", "good", "worse"]
        for _ in range(2):
            with pytest.raises(OSError) as e:
                os.listdir(view / "bad")
            assert e.value.errno == errno.EIO
            with pytest.raises(OSError) as e:
                (view / "worse" / "f").read_bytes()
            assert e.value.errno == errno.EIO
        assert (view / "good" / "f").read_bytes() == b"good" * 1000
        assert os.stat(view / "worse" / "f").st_size == 5000  # its tree is fine
        find = subprocess.run(["find", str(view)], capture_output=True)
        assert find.returncode == 1 and str(view / "good" / "f").encode() in find.stdout
        assert m.proc.poll() is None  # still serving
        assert m.stop() == 0
    warnings = [ln for ln in m.stderr().splitlines() if "warning" in ln]
    assert len(warnings) == 2, warnings  # one per damaged object, however often it is read
    assert f"/src/bad: tree {bad_tree.subtree.hex()[:16]}: pack " in warnings[0], warnings
    assert "/src/worse/f: cannot read: pack " in warnings[1], warnings
    assert "Traceback" not in m.stderr()
