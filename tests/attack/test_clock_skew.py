"""Clocks an hour or two off (``faketime``, as a laptop with a wrong clock or a container
with a faked one): real processes with skewed clocks beside ours share one object cache
and one store's locks.

- The object cache ages temporary files and orders its LRU by the filesystem's clock: a
  process two hours ahead does not take another writer's fresh temporary file for a
  crash's leftover, and a hit by a process two hours behind still makes that entry the
  most recently used (it used to touch it two hours into the past, first to be evicted).
- Lock staleness is judged by the storage's clock: ``unlock`` run an hour ahead or behind
  removes no live lock. (gc beside a backup whose clock is hours off is
  tests/integration/test_gc_beside.py; the interleaving checker skews clocks too.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casbackup.store.cache import ObjectCache
from casbackup.store.locks import list_locks, shared_lock
from tests.helpers import cli_env, make_store, open_test_store

pytestmark = pytest.mark.skipif(shutil.which("faketime") is None and not os.environ.get("CI"),
                                reason="faketime is not installed (scripts/setup.sh --test)")


def _skewed(offset: str, *args: str) -> str:
    """Python with ARGS, its clock OFFSET off; its stdout."""
    r = subprocess.run(["faketime", "-f", offset, sys.executable, *args],
                       env={**cli_env(), "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _tree_id(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


CACHE = """
import sys, time
from pathlib import Path
from casbackup.store.cache import ObjectCache
c = ObjectCache(Path(sys.argv[1]), tree_limit=10**9)
print(time.time())
if sys.argv[2] == "put-and-trim":
    c.put_tree(bytes(32), 3, b"abc")
    c.trim()
else:
    assert c.get_tree(bytes.fromhex(sys.argv[2])) is not None
"""


def test_a_process_hours_ahead_keeps_a_fresh_temporary_file(tmp_path: Path) -> None:
    c = ObjectCache(tmp_path)
    c.put_tree(_tree_id(1), 3, b"abc")
    folder = c._tree_path(_tree_id(1)).parent  # noqa: SLF001
    fresh, old = folder / ".tmp-writer-at-work", folder / ".tmp-crash-leftover"
    fresh.write_bytes(b"a writer still at work")
    old.write_bytes(b"a crash's leftover")
    os.utime(old, (time.time() - 3 * 3600, time.time() - 3 * 3600))
    their_now = float(_skewed("+2h", "-c", CACHE, str(tmp_path), "put-and-trim"))
    assert their_now > time.time() + 3600  # the clock was skewed
    assert fresh.exists() and not old.exists()


def test_a_hit_by_a_process_hours_behind_is_the_most_recent_use(tmp_path: Path) -> None:
    c = ObjectCache(tmp_path, tree_limit=2 * (8 + 1000))
    base = time.time() - 600
    for i in range(3):
        c.put_tree(_tree_id(i), 1000, b"x" * 1000)
        path = c._tree_path(_tree_id(i))  # noqa: SLF001
        os.utime(path, (base + i, base + i))  # used ten minutes ago, 0 before 1 before 2
    their_now = float(_skewed("-2h", "-c", CACHE, str(tmp_path), _tree_id(0).hex()))
    assert their_now < time.time() - 3600
    assert c.trim(force=True) == 1
    kept = {i for i in range(3) if c._tree_path(_tree_id(i)).exists()}  # noqa: SLF001
    assert kept == {0, 2}, kept  # 1 was the least recently used, not 0


UNLOCK = ["-m", "casbackup", "unlock", "--json", "--store"]


@pytest.mark.parametrize("offset", ["+1h", "-1h"])
def test_unlock_with_a_skewed_clock_removes_no_live_lock(tmp_path: Path, offset: str) -> None:
    make_store(tmp_path / "store").close()
    st = open_test_store(tmp_path / "store")
    try:
        with shared_lock(st, "restore"):
            (live,) = list_locks(st)
            out = _skewed(offset, *UNLOCK, str(tmp_path / "store"))
            summary = json.loads(out.splitlines()[-1])
            assert summary["removed"] == [] and summary["remaining"] == 1, summary
            assert [lk.name for lk in list_locks(st)] == [live.name]
    finally:
        st.close()
