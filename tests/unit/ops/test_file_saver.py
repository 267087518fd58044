"""The file saver's small-file batch path keeps order, and sends a file that changed
since the walker's lstat down the careful (re-reading) path."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from casbackup.model.snapshot import Summary
from casbackup.model.tree import FILE, Node
from casbackup.ops.file_saver import FileSaver
from casbackup.ops.observer import Observer
from tests.helpers import make_store


def _node(p: Path) -> Node:
    st = os.lstat(p)
    return Node(os.fsencode(p.name), FILE, size=st.st_size, mtime_ns=st.st_mtime_ns,
                ctime_ns=st.st_ctime_ns, inode=st.st_ino)


def test_small_batch_order_and_changed_file(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    store.load_index()
    files = []
    for i, data in enumerate([b"one", b"", b"three" * 100, b"one"]):
        p = tmp_path / f"f{i}"
        p.write_bytes(data)
        files.append(p)
    nodes = [_node(p) for p in files]
    files[2].write_bytes(b"changed after the walker's lstat")  # stale node for f2
    summary = Summary()
    saver = FileSaver(store, Observer(), summary, threading.Lock(), dry_run=False,
                      workers=1, max_inflight=1)
    store.packer  # noqa: B018 (its threads and files exist before we count descriptors)
    open_before = len(os.listdir("/proc/self/fd"))
    batch = [(os.open(p, os.O_RDONLY), n, os.fsencode(p)) for p, n in zip(files, nodes,
                                                                         strict=True)]
    saver._slots.acquire()  # what submit() does
    results = saver._save_batch(batch)
    saver.close()
    # every descriptor handed over was closed (one more may be the open pack's temp file)
    assert len(os.listdir("/proc/self/fd")) - open_before in (0, 1)
    store.flush()
    assert [r.content == [] for r in results] == [False, True, False, False]
    assert results[0].content == results[3].content  # same bytes, same blob, stored once
    assert store.get_blob(results[2].content[0]) == b"changed after the walker's lstat"
    assert store.get_blob(results[0].content[0]) == b"one"
    assert summary.blobs_added == 2


def test_small_batches_run_on_their_own_thread_big_files_on_the_pool(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    store.load_index()
    small_size = store.chunker.params.min_size
    small = tmp_path / "small"
    small.write_bytes(b"s" * 100)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(small_size + 1))
    saver = FileSaver(store, Observer(), Summary(), threading.Lock(), dry_run=False,
                      workers=2, max_inflight=4)
    ran: list[tuple[int, str]] = []
    inner = saver._save_batch

    def spy(batch: list[tuple[int, Node, bytes]]) -> list[object]:
        ran.append((len(batch), threading.current_thread().name))
        return inner(batch)  # type: ignore[return-value]

    saver._save_batch = spy  # type: ignore[method-assign]
    futs = [saver.submit([(os.open(p, os.O_RDONLY), _node(p), os.fsencode(p))
                          for p in (small, small)]),
            saver.submit([(os.open(big, os.O_RDONLY), _node(big), os.fsencode(big))])]
    results = [f.result() for f in futs]
    saver.close()
    store.flush()
    names = {n: t for n, t in ran}
    assert names[2].startswith("file-saver-small") and not names[1].startswith(
        "file-saver-small") and names[1].startswith("file-saver")
    assert store.get_blob(results[0][0].content[0]) == b"s" * 100
    assert b"".join(store.get_blob(b) for b in results[1][0].content) == big.read_bytes()
