"""``casbackup watch`` as a real process driven by real filesystem events (issue #5): after
a burst of changes the latest snapshot — and its replica (``--sync-to``) — restores to
exactly the tree on disk; only changed directories are read; a constantly changing tree
still gets snapshots; SIGINT/SIGTERM stop cleanly; a rescan request (and a lost-events
report) fall back to a full scan."""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from casbackup.ops.restore import restore
from casbackup.ops.verify import verify
from casbackup.ops.watch import Watcher, WatchObserver, WatchOptions, WatchSnapshot
from casbackup.store import Store
from tests.helpers import cli_env, make_store, open_test_store, restored_root, run_cli, tree_state
from tests.integration.test_sync import paired

Line = dict[str, Any]


class WatchProc:
    """A ``casbackup watch --json`` subprocess whose stdout lines are read by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "casbackup", "watch", "--json", *args], env=cli_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[Line] = queue.Queue()
        self.seen: list[Line] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(json.loads(raw))

    def wait_for(self, pred: Callable[[Line], bool], timeout: float = 120) -> Line:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if pred(line):
                return line
        err = self.proc.stderr.read().decode() if self.proc.poll() is not None and \
            self.proc.stderr else ""
        raise AssertionError(f"timed out; seen {self.seen}; stderr {err}")

    def quiet(self, seconds: float) -> list[Line]:
        """Lines that arrive within ``seconds``."""
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.lines.get(timeout=left))
            except queue.Empty:
                break
        self.seen.extend(out)
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()


def _is(kind: str) -> Callable[[Line], bool]:
    return lambda x: x["message_type"] == kind


def settle(w: WatchProc, replica: bool = False, quiet: float = 1.5) -> Line:
    """Wait for the burst's snapshot (and its replication), then for silence."""
    last = w.wait_for(_is("saved"))
    if replica:
        w.wait_for(lambda x: x["message_type"] == "synced" and x["source_id"] == last["id"])
    while more := [x for x in w.quiet(quiet) if x["message_type"] == "saved"]:
        last = more[-1]
        if replica:
            w.wait_for(lambda x, sid=last["id"]: x["message_type"] == "synced"
                       and x["source_id"] == sid)
    return last


def _without(state: dict[bytes, Any], excluded: Callable[[bytes], bool]) -> dict[bytes, Any]:
    return {k: v for k, v in state.items() if not excluded(k)}


def check_restores(st: Store, snap_id: str, src: Path, tmp: Path,
                   excluded: Callable[[bytes], bool] = lambda k: False) -> None:
    out = tmp / f"restore-{time.monotonic_ns()}"
    restore(st, snap_id, str(out))
    want = _without(tree_state(src), excluded)
    got = tree_state(restored_root(out, src))
    for k in sorted(set(want) | set(got)):
        assert want.get(k) == got.get(k), (k, want.get(k), got.get(k))


def make_tree(root: Path, dirs: int = 6, files: int = 5) -> Path:
    for d in range(dirs):
        sub = root / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(files):
            (root / f"d{d}" / f"f{f}.txt").write_text(f"{d}/{f}\n" * (f + 1))
            (sub / f"g{f}").write_bytes(os.urandom(100 * f))
    os.symlink("d0/f0.txt", root / "top-link")
    return root


def burst(src: Path) -> None:
    """Every kind of change, in quick succession."""
    (src / "d0" / "f1.txt").write_text("modified in place\n")
    (src / "d0" / "new.txt").write_text("created\n")
    (src / "d1" / "f2.txt").unlink()
    os.rename(src / "d1" / "f3.txt", src / "d2" / "moved-file.txt")
    os.rename(src / "d3", src / "d4" / "moved-dir")  # a whole directory, into another
    os.rename(src / "d5" / "inner", src / "d5" / "renamed-inner")
    shutil.rmtree(src / "d2" / "inner")
    (src / "fresh" / "a" / "b").mkdir(parents=True)
    (src / "fresh" / "a" / "b" / "deep.txt").write_text("deep\n")
    os.symlink("../d0/new.txt", src / "fresh" / "link")
    os.unlink(src / "top-link")
    os.symlink("d4/f0.txt", src / "top-link")  # retargeted
    os.chmod(src / "d4" / "f1.txt", 0o600)
    (src / "d0" / "scratch.tmp").write_text("excluded\n")
    (src / "build" / "obj").mkdir(parents=True)
    (src / "build" / "obj" / "x.o").write_bytes(b"\0" * 100)
    (src / "d0" / "big.bin").write_bytes(os.urandom(3 << 20))


def _excluded(k: bytes) -> bool:
    return k.endswith(b".tmp") or k == b"build" or k.startswith(b"build/")


def test_burst_of_changes_restores_exactly_and_replicates(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    st = make_store(tmp_path / "store")
    paired(st, tmp_path / "replica").close()
    st.close()
    w = WatchProc(str(src), "--store", str(tmp_path / "store"), "--sync-to",
                  str(tmp_path / "replica"), "--debounce", "0.3", "--exclude", "*.tmp",
                  "--exclude", "/build/")
    try:
        first = w.wait_for(_is("saved"))
        assert first["scan"] == "full" and first["reason"] == "initial"
        w.wait_for(_is("ready"))
        burst(src)
        last = settle(w, replica=True)
        assert last["scan"] == "partial" and last["latency_seconds"] < 5
        # more churn on top: the watcher keeps following
        (src / "d4" / "moved-dir" / "f0.txt").write_text("second round\n")
        os.rename(src / "fresh", src / "d0" / "fresh-moved")
        (src / "build" / "obj" / "y.o").write_bytes(b"1")  # excluded only: no snapshot
        last = settle(w, replica=True)
    finally:
        code, err = w.stop()
    assert code == 0, err
    store, replica = open_test_store(tmp_path / "store"), open_test_store(tmp_path / "replica")
    assert store.snapshots()[-1].id == last["id"]
    check_restores(store, last["id"], src, tmp_path, _excluded)
    rep = verify(replica, read_data=True)
    assert rep.ok, rep.problems
    assert replica.snapshots()[-1].original == last["id"]
    check_restores(replica, "latest", src, tmp_path, _excluded)


def test_one_change_reads_one_directory(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", dirs=30, files=3)
    st = make_store(tmp_path / "store")
    st.close()
    w = WatchProc(str(src), "--store", str(tmp_path / "store"), "--debounce", "0.2")
    try:
        w.wait_for(_is("ready"))
        (src / "d17" / "inner" / "g1").write_bytes(b"changed")
        snap = settle(w, quiet=0.5)
    finally:
        code, err = w.stop(signal.SIGINT)
    assert code == 0, err
    # read: the source root, d17 and d17/inner; kept: the other 29 directories unread
    assert snap["dirs_scanned"] == 3 and snap["dirs_reused"] == 29, snap
    assert snap["files_unmodified"] == 30 * 6 - 1 and snap["files_changed"] == 1
    check_restores(open_test_store(tmp_path / "store"), snap["id"], src, tmp_path)


def test_constant_changes_still_get_snapshots(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", dirs=2)
    make_store(tmp_path / "store").close()
    w = WatchProc(str(src), "--store", str(tmp_path / "store"), "--debounce", "0.5",
                  "--max-delay", "0.8")
    try:
        w.wait_for(_is("ready"))
        t_end = time.monotonic() + 3.0
        i = 0
        while time.monotonic() < t_end:  # never quiet for 0.5 s
            (src / "d0" / "busy.txt").write_text(f"write {i}\n")
            i += 1
            time.sleep(0.1)
        during = [x for x in w.seen + w.quiet(0.01) if x["message_type"] == "saved"][1:]
        assert len(during) >= 2, "max-delay forces snapshots while changes continue"
        assert all(x["latency_seconds"] < 2.5 for x in during)
        settle(w, quiet=1.0)
    finally:
        code, err = w.stop()
    assert code == 0, err
    check_restores(open_test_store(tmp_path / "store"), "latest", src, tmp_path)


def test_rescan_request_catches_what_events_cannot(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", dirs=2)
    target = src / "d1" / "f4.txt"
    make_store(tmp_path / "store").close()
    w = WatchProc(str(src), "--store", str(tmp_path / "store"), "--debounce", "0.2")
    fd = os.open(target, os.O_RDWR)
    try:
        w.wait_for(_is("ready"))
        with mmap.mmap(fd, os.fstat(fd).st_size) as m:  # a write through a shared mapping
            m[:4] = b"MMAP"  # ... raises no inotify event while the file stays open
            m.flush()
        assert not [x for x in w.quiet(1.0) if x["message_type"] == "saved"]
        w.proc.send_signal(signal.SIGUSR1)
        snap = w.wait_for(_is("saved"))
        assert snap["scan"] == "full" and "rescan" in snap["reason"]
    finally:
        os.close(fd)
        code, err = w.stop()
    assert code == 0, err
    check_restores(open_test_store(tmp_path / "store"), snap["id"], src, tmp_path)


def test_store_inside_the_source_is_refused_unless_excluded(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", dirs=1)
    make_store(src / "backups").close()
    r = run_cli("watch", str(src), "--store", str(src / "backups"))
    assert r.returncode == 2 and b"inside the watched path" in r.stderr
    w = WatchProc(str(src), "--store", str(src / "backups"), "--exclude", "/backups/",
                  "--debounce", "0.2")
    try:
        w.wait_for(_is("ready"))
        assert not [x for x in w.quiet(1.0) if x["message_type"] == "saved"], "no feedback loop"
    finally:
        code, err = w.stop()
    assert code == 0, err


@contextlib.contextmanager
def watching(st: Store, src: Path) -> Iterator[tuple[list[WatchSnapshot], Callable[[], None]]]:
    """An in-process watcher of SRC (debounce 0.1 s), ready; yields its snapshots so far
    and a function that waits (up to 10 s) until there are two; stops it on exit."""
    snaps: list[WatchSnapshot] = []
    ready = threading.Event()

    class Obs(WatchObserver):
        def ready(self) -> None:
            ready.set()

        def snapshot(self, info: WatchSnapshot) -> None:
            snaps.append(info)

    def wait_for_second() -> None:
        deadline = time.monotonic() + 60
        while len(snaps) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    stop = threading.Event()
    t = threading.Thread(target=Watcher(st, [str(src)], WatchOptions(debounce=0.1), Obs(),
                                        stop).run)
    t.start()
    try:
        assert ready.wait(60)
        yield snaps, wait_for_second
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive(), "the watcher did not stop"


def test_lost_events_fall_back_to_a_full_scan(tmp_path: Path) -> None:
    """In process: watchdog reports a kernel queue overflow only in its log."""
    src = make_tree(tmp_path / "src", dirs=2)
    st = make_store(tmp_path / "store")
    with watching(st, src) as (snaps, wait_for_second):
        (src / "d0" / "f0.txt").write_text("seen\n")
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost")
        wait_for_second()
    assert snaps[1].scan == "full" and snaps[1].reason == "event queue overflow"
    assert snaps[1].snapshot is not None
    check_restores(st, snaps[1].snapshot.id, src, tmp_path)


def test_source_replaced_wholesale_is_watched_again(tmp_path: Path) -> None:
    """rm -rf the source and make it anew (a fresh clone): the dead observer is restarted,
    the next backup is a full scan, and the snapshot matches the new tree."""
    src = make_tree(tmp_path / "src", dirs=2)
    make_store(tmp_path / "store").close()
    w = WatchProc(str(src), "--store", str(tmp_path / "store"), "--debounce", "0.2")
    try:
        w.wait_for(_is("ready"))
        shutil.rmtree(src)
        time.sleep(0.5)
        make_tree(src, dirs=3, files=2)
        snap = w.wait_for(lambda x: x["message_type"] == "saved" and x["scan"] == "full", 120)
        assert "watcher error" in snap["reason"]
        (src / "d2" / "after.txt").write_text("seen by the new observer\n")
        snap = settle(w, quiet=1.0)
    finally:
        code, err = w.stop()
    assert code == 0, err
    check_restores(open_test_store(tmp_path / "store"), snap["id"], src, tmp_path)


def test_gc_between_snapshots_after_the_parent_was_forgotten(tmp_path: Path) -> None:
    """forget + gc run (between the watcher's backups) and delete the parent's blobs: the
    watcher sees the new index, notices its parent is gone and does a full scan."""
    from casbackup.ops.gc import GcOptions, gc

    src = make_tree(tmp_path / "src", dirs=3)
    st = make_store(tmp_path / "store")
    with watching(st, src) as (snaps, wait_for_second):
        other = open_test_store(tmp_path / "store")  # another process, in effect
        for sid in other.snapshot_ids():
            other.delete_snapshot(sid)
        rep = gc(other, GcOptions(keep_unindexed_for=0))
        assert rep.to_map()  # everything was garbage
        (src / "d1" / "f0.txt").write_text("after gc\n")
        wait_for_second()
    assert len(snaps) >= 2 and snaps[1].scan == "full" and snaps[1].snapshot is not None
    fresh = open_test_store(tmp_path / "store")
    rep2 = verify(fresh, read_data=True)
    assert rep2.ok, rep2.problems
    check_restores(fresh, snaps[1].snapshot.id, src, tmp_path)


def test_repair_between_snapshots_makes_the_next_one_a_full_scan_that_heals(
        tmp_path: Path) -> None:
    """A blob of a file in a directory the watcher will not see change is damaged, and
    `repair` drops it from the index. The next watch snapshot must not keep that clean
    directory's old subtree (it would name a blob no index has): repair removed index
    objects, so the watcher scans everything, re-reads the file and the store is whole."""
    from casbackup.model.tree import DIR
    from casbackup.ops.repair import repair

    src = make_tree(tmp_path / "src", dirs=3)
    st = make_store(tmp_path / "store")
    with watching(st, src) as (snaps, wait_for_second):
        other = open_test_store(tmp_path / "store")  # another process, in effect
        first = snaps[0].snapshot
        assert first is not None
        tree = other.load_tree(first.tree)
        for part in src.parts[1:]:  # down to d2, which will stay clean
            node = tree.find(part.encode())
            assert node is not None and node.type == DIR and node.subtree
            tree = other.load_tree(node.subtree)
        d2 = tree.find(b"d2")
        assert d2 is not None and d2.subtree
        f1 = other.load_tree(d2.subtree).find(b"f1.txt")
        assert f1 is not None and f1.content
        loc = other.locate(f1.content[0])
        pack = tmp_path / "store" / "packs" / loc.pack[:2] / loc.pack
        with open(pack, "r+b") as fh:  # flip a byte inside that blob
            fh.seek(loc.entry.offset + loc.entry.length // 2)
            b = fh.read(1)
            fh.seek(-1, os.SEEK_CUR)
            fh.write(bytes([b[0] ^ 0xFF]))
        assert not verify(open_test_store(tmp_path / "store"), read_data=True).ok
        repair(other)
        assert f1.content[0] not in open_test_store(tmp_path / "store").load_index()
        (src / "d1" / "f0.txt").write_text("a change elsewhere\n")
        wait_for_second()
    assert len(snaps) >= 2 and snaps[1].snapshot is not None
    assert snaps[1].scan == "full" and "repair" in snaps[1].reason
    fresh = open_test_store(tmp_path / "store")
    assert f1.content[0] in fresh.load_index()  # uploaded again from the source
    rep = verify(fresh, read_data=True)
    assert rep.ok, rep.problems
    check_restores(fresh, snaps[1].snapshot.id, src, tmp_path)
