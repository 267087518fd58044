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
