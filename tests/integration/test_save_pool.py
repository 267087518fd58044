"""The save worker processes (ops/save_pool.py, save_worker.py), real processes:

- the pool and the threads give the same root tree and the same blobs (either order,
  one store: the second backup adds nothing), and what the workers sealed verifies;
- a file changed after the walker's lstat is saved by the careful path, as last read;
- a worker killed by SIGKILL mid-backup: exit 1, one line naming it, no snapshot, the
  store verifies and the next backup succeeds; SIGINT (also to the whole process group)
  exits 130; SIGTERM to the backup and its worker exits 143; the parent killed by
  SIGKILL; after each, no worker process is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from casbackup.ids import DATA
from casbackup.ops import archiver as archiver_mod
from casbackup.ops import file_saver as saver_mod
from casbackup.ops import save_pool
from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.ops.verify import verify
from casbackup.store import Store
from tests.helpers import (
    cli_env,
    make_store,
    open_test_store,
    restored_root,
    run_cli,
    source_subtree,
)


def _mixed(root: Path) -> Path:
    for d in range(4):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(150):
            (root / f"d{d}" / f"f{i}").write_bytes(os.urandom(10 + 37 * i))
        for i in range(20):  # the same content in many files (and in each worker)
            (root / f"d{d}" / f"same{i}").write_bytes(b"same content\n" * 40)
        (root / f"d{d}" / "empty").write_bytes(b"")
        (root / f"d{d}" / "big").write_bytes(os.urandom((1 << 20) + d))
    return root


def _data_ids(store: Store) -> set[bytes]:
    return {e.id for p in store.load_index().iter_packs() for e in p.entries
            if e.kind == DATA}


def _opts(procs: int) -> BackupOptions:
    return BackupOptions(type="full", archive=ArchiveOptions(save_procs=procs, prefetch=False))


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every small batch to the pool (no thread-first warm-up); counts the pool's batches."""
    monkeypatch.setattr(saver_mod, "POOL_AFTER", 0)
    seen: list[int] = []
    real = save_pool.SavePool.request

    def spy(self: save_pool.SavePool, files: list[tuple[int, int, int, int]]) -> Any:
        seen.append(len(files))
        return real(self, files)

    monkeypatch.setattr(save_pool.SavePool, "request", spy)
    return seen


@pytest.mark.parametrize("first_procs", [2, 0])
def test_pool_and_threads_give_the_same_tree_and_blobs(
        tmp_path: Path, batches: list[int], first_procs: int) -> None:
    store = make_store(tmp_path / "store")
    src = _mixed(tmp_path / "mixed")
    first = backup(store, [str(src)], _opts(first_procs))
    store.flush()
    blobs = _data_ids(store)
    again = backup(store, [str(src)], _opts(2 - first_procs))
    assert sum(batches) >= 4 * 170  # the pool saved every small file of one backup
    assert again.summary.files_new == first.summary.files_new == 4 * 172
    assert (source_subtree(store, again.snapshot.tree, src)
            == source_subtree(store, first.snapshot.tree, src))
    assert _data_ids(store) == blobs  # not one data blob added
    rep = verify(open_test_store(tmp_path / "store"), read_data=True)
    assert rep.ok, rep.problems
    out = tmp_path / "out"
    restore(store, "latest", str(out))
    got = restored_root(out, src)
    for d in range(4):
        for name in ("f0", "f149", "same3", "empty", "big"):
            assert (got / f"d{d}" / name).read_bytes() == (src / f"d{d}" / name).read_bytes()


def test_a_file_changed_after_the_lstat_is_saved_as_last_read(
        tmp_path: Path, batches: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "store")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"f{i:03d}").write_bytes(b"old %d\n" % i)
    real = archiver_mod._lstat_all

    def lstat_then_change(dir_fd: int) -> Any:
        got = real(dir_fd)
        for i in range(0, 200, 7):  # after the lstat, before the worker reads
            (src / f"f{i:03d}").write_bytes(b"new content, longer than before %d\n" % i)
        return got

    careful: list[bytes] = []
    real_one = saver_mod.FileSaver._save_one

    def save_one(self: saver_mod.FileSaver, fd: int, node: Any, display: str) -> Any:
        careful.append(node.name)
        return real_one(self, fd, node, display)

    monkeypatch.setattr(archiver_mod, "_lstat_all", lstat_then_change)
    monkeypatch.setattr(saver_mod.FileSaver, "_save_one", save_one)
    res = backup(store, [str(src)], _opts(2))
    assert sum(batches) == 200 and res.summary.files_new == 200
    # the workers gave exactly the changed files back to the careful path
    assert sorted(careful) == [b"f%03d" % i for i in range(0, 200, 7)]
    out = tmp_path / "out"
    restore(store, "latest", str(out))
    got = restored_root(out, src)
    for i in range(200):
        assert (got / f"f{i:03d}").read_bytes() == (src / f"f{i:03d}").read_bytes()


def _small_tree(root: Path, n: int = 1500) -> Path:
    for i in range(n):
        d = root / f"d{i // 300}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(os.urandom(100 + i % 900))
    return root


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(p.name))
    return out


def _stopped_backup(store: Path, src: Path, procs: int) -> tuple[subprocess.Popen[bytes], int]:
    """A CLI backup stopped (SIGSTOP) just after its first save worker started; its pid."""
    env = cli_env(CASBACKUP_SAVE_PROCS=str(procs), CASBACKUP_TEST_STOP_AT="save-pool:started")
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", "backup", "--store",
                             str(store), str(src)], env=env, process_group=0,  # a job
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _state(proc.pid) != "T":
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the backup never started a save worker"
        time.sleep(0.02)
    kids = [k for k in _children(proc.pid) if b"save_worker" in _cmdline(k)]
    assert len(kids) == 1, [_cmdline(k) for k in _children(proc.pid)]
    return proc, kids[0]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _names(d: Path) -> list[str]:
    return sorted(os.listdir(d)) if d.exists() else []


def _gone(pid: int) -> None:
    deadline = time.monotonic() + 30  # a loaded CI machine: an orphan ends within seconds
    while _state(pid) not in ("gone", "Z"):
        assert time.monotonic() < deadline, f"worker {pid} outlived its backup"
        time.sleep(0.02)


def test_a_worker_killed_fails_the_backup_cleanly(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0
    src = _small_tree(tmp_path / "src")
    proc, worker = _stopped_backup(store, src, 1)
    os.kill(worker, signal.SIGKILL)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err.decode(), err
    assert lines[0] == (f"casbackup: a file-saving worker process (pid {worker}) was killed "
                        "by SIGKILL; the backup stopped and no snapshot was written")
    assert _names(store / "snapshots") == []
    assert _names(store / "locks") == []
    _gone(worker)
    rep = verify(open_test_store(store), read_data=True)
    assert rep.ok, rep.problems
    r = run_cli("backup", "--store", str(store), str(src),
                env=cli_env(CASBACKUP_SAVE_PROCS="1"))
    assert r.returncode == 0, r.stderr
    assert len(_names(store / "snapshots")) == 1
    rep = verify(open_test_store(store), read_data=True)
    assert rep.ok, rep.problems


@pytest.mark.parametrize("group", [False, True])
def test_sigint_stops_the_backup_and_its_workers(tmp_path: Path, group: bool) -> None:
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0
    src = _small_tree(tmp_path / "src")
    proc, worker = _stopped_backup(store, src, 2)
    if group:  # Ctrl-C at a terminal: SIGINT to the job's process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.decode().strip().splitlines()) == 1, err
    assert _names(store / "snapshots") == []
    _gone(worker)
    assert [k for k in _children(proc.pid) if b"save_worker" in _cmdline(k)] == []
    rep = verify(open_test_store(store), read_data=True)
    assert rep.ok, rep.problems


def test_no_worker_to_be_had_saves_on_the_thread(
        tmp_path: Path, batches: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "store")
    src = _mixed(tmp_path / "mixed")
    monkeypatch.setattr(save_pool.sys, "executable", str(tmp_path / "no-such-python"))
    first = backup(store, [str(src)], _opts(2))
    assert batches  # the pool was asked, and could start nothing
    store.flush()
    blobs = _data_ids(store)
    monkeypatch.undo()
    again = backup(store, [str(src)], _opts(0))
    assert (source_subtree(store, again.snapshot.tree, src)
            == source_subtree(store, first.snapshot.tree, src))
    assert _data_ids(store) == blobs


def test_a_parent_killed_leaves_no_worker(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0
    src = _small_tree(tmp_path / "src")
    proc, worker = _stopped_backup(store, src, 1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    _gone(worker)  # its socket's end of file ended it


def test_sigterm_to_the_backup_and_its_worker_exits_143(tmp_path: Path) -> None:
    # a service manager stopping the unit signals every process of it, the worker too
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0
    src = _small_tree(tmp_path / "src")
    proc, worker = _stopped_backup(store, src, 1)
    os.kill(worker, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.decode().strip() == ("casbackup: terminated: backup did not finish: "
                                    "no snapshot was written")
    assert _names(store / "snapshots") == []
    _gone(worker)
