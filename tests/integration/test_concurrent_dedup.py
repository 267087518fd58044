"""Two backups running at the same time dedup against each other (issue #3, item 3):
a writer picks up the other's index objects when it starts and every few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import cli_env, json_result, make_store, open_test_store


def _content_ids(st: object, snap_id: str, src: Path, name: bytes) -> set[bytes]:
    s = st.load_snapshot(snap_id)  # type: ignore[attr-defined]
    tree = st.load_tree(s.tree)  # type: ignore[attr-defined]
    for part in os.path.abspath(src).strip("/").split("/"):
        tree = st.load_tree(tree.find(os.fsencode(part)).subtree)  # type: ignore[attr-defined]
    return set(tree.find(name).content)


def test_second_backup_reuses_blobs_the_running_first_one_indexed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_store(store, pack_size=1 << 20).close()
    common = os.urandom(6 << 20)
    a, b = tmp_path / "a", tmp_path / "b"
    for s in (a, b):
        s.mkdir()
        (s / "0-common.bin").write_bytes(common)  # sorted first: saved early by both
    (a / "1-bulk.bin").write_bytes(os.urandom(120 << 20))  # keeps A running a while
    (b / "1-own.bin").write_bytes(os.urandom(1 << 20))

    def start(src: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "casbackup", "backup", "--store",
                                 str(store), str(src), "--json"], env=cli_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    pa = start(a)
    deadline = time.monotonic() + 60
    while not list((store / "index").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pa.poll() is None, "A finished before B could start: make A's source larger"
    pb = start(b)
    outs = {}
    for name, p in (("a", pa), ("b", pb)):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs[name] = json_result(out)
    st = open_test_store(store)
    st.load_full_index()
    ids = _content_ids(st, outs["b"]["snapshot_id"], b, b"0-common.bin")
    assert ids == _content_ids(st, outs["a"]["snapshot_id"], a, b"0-common.bin")
    copies = sum(1 for p in st.index.packs.values() for e in p.entries if e.id in ids)
    assert copies == len(ids), "B stored the common file again"
    assert outs["b"]["data_added"] < 2 << 20  # its own 1 MiB and trees, not the 6 MiB
