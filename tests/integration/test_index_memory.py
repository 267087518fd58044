"""Memory of the first command after a writer left one huge index object (issue #12
point 2): the compact build decodes it streaming (``store/indexruns.py``), so its peak
RSS grows by the object's bytes and a bounded window, not by a Python object per entry
(~500 B an entry before). Measured in a fresh process by its own peak RSS
(``VmHWM``), against a bound per entry and against a smaller object: no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from casbackup.ids import INDEX, object_name
from casbackup.store.index import PackInfo, encode_index
from casbackup.store.layout import index_key
from casbackup.store.pack import PackEntry
from tests.helpers import PASSWORD, make_store

PER_PACK = 1000


def _store_with_one_object(path: Path, n: int) -> None:
    st = make_store(path)
    packs = []
    for p in range(0, n, PER_PACK):
        k = min(PER_PACK, n - p)
        packs.append(PackInfo(os.urandom(32).hex(), "data", k * 100,
                              [PackEntry("data", os.urandom(32), i * 100, 100, 90)
                               for i in range(k)]))
    sealed = st.codec.seal(INDEX, encode_index(packs))
    st.put_named(index_key(object_name(sealed)), sealed)
    st.close()


_PROBE = """
import json, sys
from pathlib import Path
from casbackup.store import CacheSettings, open_store
import numpy, msgpack  # imported before the baseline: the build needs them anyway
st = open_store(sys.argv[1], lambda: sys.argv[2], cache=CacheSettings(Path(sys.argv[3])))
def peak():  # VmHWM: this process's own peak (ru_maxrss would start at the parent's)
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:"))
before = peak()
idx = st.load_index()
print(json.dumps({"before": before, "after": peak(), "n": len(idx)}))
"""


def _first_open(path: Path, cache: Path) -> tuple[int, int]:
    """(peak RSS growth of a fresh process's first index load in bytes, entries)."""
    r = subprocess.run([sys.executable, "-c", _PROBE, str(path), PASSWORD, str(cache)],
                       capture_output=True, check=True)
    got = json.loads(r.stdout)
    return got["after"] - got["before"], got["n"]


def test_the_first_open_after_a_huge_index_object_is_bounded(tmp_path: Path) -> None:
    small, big = 50_000, 400_000
    _store_with_one_object(tmp_path / "small", small)
    _store_with_one_object(tmp_path / "big", big)
    g_small, n_small = _first_open(tmp_path / "small", tmp_path / "c-small")
    g_big, n_big = _first_open(tmp_path / "big", tmp_path / "c-big")
    assert (n_small, n_big) == (small, big)
    # the object's sealed, decrypted and plain bytes (~130 B an entry in all) and a
    # bounded window (RUN_ENTRIES entries); a Python object per entry (the decoder
    # before this) measured ~480 B an entry
    per_entry = (g_big - g_small) / (big - small)
    assert per_entry < 250, (g_small, g_big, per_entry)
    # the cache it built opens for the next command at almost no cost
    again, n = _first_open(tmp_path / "big", tmp_path / "c-big")
    assert n == big and again < g_big / 4, (again, g_big)


_ADDER = """
import os, signal, sys
from pathlib import Path
from casbackup.crypto.codec import DATA
from casbackup.store import CacheSettings, open_store
def peak():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:"))
path, password, cache, n, kill = sys.argv[1:6]
st = open_store(path, lambda: password, cache=CacheSettings(Path(cache)))
st.load_index()
import numpy  # the spill needs it: imported before the baseline
base = peak()
for i in range(int(n)):
    st.add_blob(DATA, b"blob %d of %s " % (i, n.encode()) * 2)
st.flush()
print(peak() - base, len(st.index.blobs), len(st.index.spilled), flush=True)
if kill == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
st.close()
"""


def _add_blobs(path: Path, cache: Path, n: int, kill: bool = False
               ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", _ADDER, str(path), PASSWORD, str(cache),
                           str(n), "kill" if kill else "close"], capture_output=True)


def test_a_backup_adding_many_blobs_holds_no_index_entry_per_blob(tmp_path: Path) -> None:
    """A writer's durable index objects leave the in-memory layer (``StoreIndex.spill``):
    the peak RSS of a process adding 120k blobs exceeds that of one adding 30k by far
    less than the ~300 B a blob the dicts held (main: +91 MB for 300k blobs). What
    grows here is bounded: a merge window (lookups read the spilled files with
    ``pread``: nothing of them is mapped); measured ~50-80 B a blob at these sizes, ~8 B a blob
    from 100k to 300k. (~10 s: two processes adding blobs; no smaller size shows it.)"""
    peaks = {}
    small, big = 30_000, 120_000
    for n in (small, big):
        make_store(tmp_path / f"s{n}", pack_size=64 << 10).close()
        r = _add_blobs(tmp_path / f"s{n}", tmp_path / f"c{n}", n)
        assert r.returncode == 0, r.stderr
        grew, in_dicts, files = (int(x) for x in r.stdout.split())
        assert in_dicts == 0 and 1 <= files <= 8  # every blob spilled; O(log n) files
        peaks[n] = grew
    per_blob = (peaks[big] - peaks[small]) / (big - small)
    assert per_blob < 150, peaks


def test_a_killed_writers_spill_is_never_found_and_the_store_is_whole(tmp_path: Path) -> None:
    """Spill files have no name (O_TMPFILE): a writer killed (-9) after its objects were
    written and spilled leaves nothing in the cache that the next command could trust;
    that command finds every blob from the durable index objects."""
    from casbackup.store import CacheSettings, open_store

    make_store(tmp_path / "s", pack_size=64 << 10).close()
    cache = tmp_path / "c"
    r = _add_blobs(tmp_path / "s", cache, 20_000, kill=True)
    assert r.returncode == -9 and int(r.stdout.split()[2]) >= 1, r
    left = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert not [n for n in left if n.endswith(".tmp")], left
    with open_store(str(tmp_path / "s"), lambda: PASSWORD,
                    cache=CacheSettings(cache)) as st:
        idx = st.load_index()
        ids = [st.blob_id(b"blob %d of 20000 " % i * 2) for i in range(20_000)]
        assert all(i in idx for i in ids)
        assert all(st.get_blob(i) == b"blob %d of 20000 " % k * 2 for k, i in
                   list(enumerate(ids))[::997])
