"""gc after forget holds no Python object per freed blob (issue #12): a real store whose
index names ``N`` synthetic blobs in packs of ``PER_PACK``, two snapshots each
referencing half the packs whole; the first is forgotten, so gc condemns and deletes
half the packs (``N / 2`` freed blobs, no repack). In a fresh process, gc's peak of
Python-side allocations (``tracemalloc``: numpy's arrays and the record's bytes are
counted, the mapped index file is not) is bounded by ``PER_FREED`` bytes per freed blob
above what an idle gc of the same store holds. The condemned packs' entries as
``PackEntry`` objects, their ``(position, entry)`` pairs, the record's lists of rows and
the consolidated index's batch of live entries held ~583 B per freed blob; ~54 remain:
the record's bytes (~47 B a blob: a plaintext, then its sealed copies -- the record is
content-named, so it is sealed whole) and the live packs' encoded index object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from casbackup.ids import DATA, TREE
from casbackup.model.snapshot import Snapshot
from casbackup.model.tree import DIR, FILE, Node, Tree
from casbackup.store import PackEntry, PackInfo, pack_key
from tests.helpers import make_store, open_test_store

N = 40_000
PER_PACK = 1000
PER_OBJECT = 5 * PER_PACK
PER_TREE = 1000
FREED = N // 2

_PROBE = r"""
import json, sys, tracemalloc
from casbackup.ops.gc import GcOptions, gc
from casbackup.store import maintainer
from tests.helpers import open_test_store

st = open_test_store(sys.argv[1])
if sys.argv[2] != "idle":
    for sid in st.snapshot_ids():
        if st.load_snapshot(sid).hostname == "forget":
            st.delete_snapshot(sid)
st.load_index()  # the cache is warm: this only opens and checks it
st.reset_index()
tracemalloc.start()
rep = gc(st, GcOptions())
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"peak": peak, "live": rep.live_blobs, "deleted": rep.packs_deleted,
                  "removed": rep.packs_removed, "repacked": rep.packs_repacked}))
"""


def _store(path: Path) -> None:
    """N blobs in N/PER_PACK packs (pack objects of the right size, never read: nothing
    is repacked); snapshot "keep" references the even packs' blobs, "forget" the odd."""
    st = make_store(path)
    packs: list[PackInfo] = []
    refs: dict[str, list[bytes]] = {"keep": [], "forget": []}
    for p in range(N // PER_PACK):
        entries = [PackEntry(DATA, os.urandom(32), 100 * i, 100, 90) for i in range(PER_PACK)]
        name = os.urandom(32).hex()
        refs["keep" if p % 2 == 0 else "forget"] += [e.id for e in entries]
        packs.append(PackInfo(name, DATA, 100 * PER_PACK + 200, entries))
        st.backend.put(pack_key(name), bytes(100 * PER_PACK + 200))
    step = PER_OBJECT // PER_PACK
    for i in range(0, len(packs), step):
        st.write_index(packs[i:i + step])
    for host, ids in refs.items():
        subtrees = []
        for i in range(0, len(ids), PER_TREE):
            t = Tree([Node(name=b"f", type=FILE, content=ids[i:i + PER_TREE])])
            subtrees.append(st.add_blob(TREE, t.encode()).id)
        root = Tree([Node(name=b"d%06d" % i, type=DIR, subtree=s)
                     for i, s in enumerate(subtrees)])
        rid = st.add_blob(TREE, root.encode()).id
        st.save_snapshot(Snapshot(time=0.0, hostname=host, username="u", paths=["/"],
                                  tree=rid))
    st.close()
    st = open_test_store(path)
    st.load_index()  # builds the compact index cache the probe then only opens
    st.close()


def _probe(store: Path, mode: str) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _PROBE, str(store), mode],
                         capture_output=True, text=True, cwd=root, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    got: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


PER_FREED = 120  # bytes per freed blob above the idle gc's peak (main: ~583, now ~54)


def test_gc_after_forget_holds_no_python_object_per_freed_blob(tmp_path: Path) -> None:
    import shutil

    _store(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    idle = _probe(tmp_path / "b", "idle")
    got = _probe(tmp_path / "a", "forget")
    assert idle["deleted"] == 0 and idle["live"] == N + 2 * (N // 2 // PER_TREE + 1)
    # the odd data packs and the pack of the forgotten snapshot's trees
    assert got["removed"] == got["deleted"] == N // PER_PACK // 2 + 1
    assert got["live"] == N // 2 + N // 2 // PER_TREE + 1 and got["repacked"] == 0
    per_freed = (got["peak"] - idle["peak"]) / FREED
    assert per_freed <= PER_FREED, f"gc after forget: {per_freed:.0f} B per freed blob"
