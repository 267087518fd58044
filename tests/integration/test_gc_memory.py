"""gc and verify hold at most 32 bytes per blob (issue #12 item 1), measured without
timing: a real store whose index names 200,000 synthetic blobs (half of them referenced
by a real snapshot, so the mark and the plan see them all), its compact index cache
built once; then, in a fresh process, ``gc --dry-run``'s and ``verify``'s peak of
Python-side allocations (``tracemalloc``: numpy's arrays are counted, the mapped index
file is not) is bounded by 32 B per blob plus a fixed allowance. The per-object index
this replaced held ~700 B per blob (140 MB here). The one transient that is not per
store is one index object decoded at a time (verify checks each; at most 200k entries,
``MAX_BLOBS``): the store here has objects of ``PER_OBJECT`` entries, as backups write."""

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

N = 200_000
PER_PACK = 1000
PER_OBJECT = 5 * PER_PACK
PER_TREE = 1000  # ids per directory tree: a decoded tree is transient, never the store
BOUND = 32 * N + (6 << 20)  # 32 B per blob above a fixed allowance (trees, batches, pages)

_PROBE = r"""
import json, sys, tracemalloc
from casbackup.ops.gc import GcOptions, gc
from casbackup.ops.verify import verify
from tests.helpers import open_test_store

st = open_test_store(sys.argv[1])
st.load_index()  # the cache is warm: this only opens and checks it
st.reset_index()
tracemalloc.start()
rep = gc(st, GcOptions(dry_run=True))
gc_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.reset_peak()
v = verify(st)
verify_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"gc_peak": gc_peak, "verify_peak": verify_peak, "live": rep.live_blobs,
                  "repack": rep.packs_repacked, "delete": rep.packs_deleted,
                  "verify_ok": v.ok, "problems": v.problems[:3], "trees": v.trees}))
"""


def _store(path: Path) -> int:
    """The store: N synthetic blobs in N/PER_PACK packs (pack objects of the right size,
    never read by a dry run), the even ones referenced by one snapshot. Returns how many
    blobs are live (referenced ones plus the trees)."""
    st = make_store(path)
    packs: list[PackInfo] = []
    live: list[bytes] = []
    for p in range(N // PER_PACK):
        entries = [PackEntry(DATA, os.urandom(32), 100 * i, 100, 90) for i in range(PER_PACK)]
        name = os.urandom(32).hex()
        # every other pack fully referenced (kept), the rest half referenced (repacked)
        live += [e.id for i, e in enumerate(entries) if p % 2 == 0 or i % 2 == 0]
        packs.append(PackInfo(name, DATA, 100 * PER_PACK + 200, entries))
        st.backend.put(pack_key(name), bytes(100 * PER_PACK + 200))
    step = PER_OBJECT // PER_PACK
    for i in range(0, len(packs), step):
        st.write_index(packs[i:i + step])
    subtrees = []
    for i in range(0, len(live), PER_TREE):
        t = Tree([Node(name=b"f", type=FILE, content=live[i:i + PER_TREE])])
        subtrees.append(st.add_blob(TREE, t.encode()).id)
    root = Tree([Node(name=b"d%06d" % i, type=DIR, subtree=s) for i, s in enumerate(subtrees)])
    rid = st.add_blob(TREE, root.encode()).id
    st.save_snapshot(Snapshot(time=0.0, hostname="h", username="u", paths=["/"], tree=rid))
    st.close()
    st = open_test_store(path)
    st.load_index()  # builds the compact index cache the probe then only opens
    st.close()
    return len(live) + len(subtrees) + 1


def _probe(script: str, store: Path) -> dict[str, Any]:
    """SCRIPT's last line of JSON, run on STORE in a child of this checkout's code."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script, str(store)],
                         capture_output=True, text=True, cwd=root, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    got: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def test_gc_and_verify_hold_at_most_32_bytes_per_blob(tmp_path: Path) -> None:
    live = _store(tmp_path / "store")
    got = _probe(_PROBE, tmp_path / "store")
    # the run saw every blob: the mark found the live ones, the plan the half-used packs
    assert got["live"] == live
    assert got["repack"] == N // PER_PACK // 2 and got["delete"] == 0
    assert got["verify_ok"], got["problems"]
    assert got["trees"] == live - N // 2 - N // 4  # every tree checked once
    assert got["gc_peak"] <= BOUND, f"gc: {got['gc_peak'] / N:.0f} B per blob"
    assert got["verify_peak"] <= BOUND, f"verify: {got['verify_peak'] / N:.0f} B per blob"


_VERIFY_PROBE = r"""
import json, sys, tracemalloc
from casbackup.ops.verify import verify
from tests.helpers import open_test_store

st = open_test_store(sys.argv[1])
st.load_index()
st.reset_index()
tracemalloc.start()
v = verify(st)
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "problems": v.problems,
                  "affected": len(v.affected), "trees": v.trees}))
"""


def test_verify_of_a_store_whose_packs_are_all_gone_holds_no_id_per_lost_blob(
        tmp_path: Path) -> None:
    """Every data pack missing (a bucket that lost its objects): verify names each pack
    and every file that lost data, and still holds at most 32 B per blob (a set of the
    lost blobs' ids was ~150 B per blob: 1.6 GiB at 10M)."""
    _store(tmp_path / "store")
    st = open_test_store(tmp_path / "store")
    gone = [o.key for o in st.backend.list("packs/") if o.size == 100 * PER_PACK + 200]
    assert len(gone) == N // PER_PACK
    for k in gone:
        st.backend.delete(k)
    st.close()
    got = _probe(_VERIFY_PROBE, tmp_path / "store")
    missing = [p for p in got["problems"] if p.endswith(f"missing ({PER_PACK} blobs lost)")]
    assert len(missing) == N // PER_PACK, got["problems"][:3]
    # the one file of every subtree lost data: each is named, through its lost packs
    assert got["affected"] == -(-(N // 2 + N // 4) // PER_TREE)
    assert got["peak"] <= BOUND, f"verify: {got['peak'] / N:.0f} B per blob"
