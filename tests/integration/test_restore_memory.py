"""Restore memory is independent of the number of files (issue #17 item 3), without timing.

A child process restores N small files (500 per directory) with ``tracemalloc`` on and
prints its peak of traced Python memory during the restore (the store's index is loaded
first: its size is the index's, not the restore's). restore writes the walk one bounded
window at a time (``ops/restore_window.py``; here 128 entries, so that a few thousand
files make many windows) and keeps between windows only the open directories and the
hard-link groups, and from the checking walk only the decoded trees that fit its
``tree_keep`` budget, so going from 1,000 to 4,000 files must not raise the peak by more
than ``PER_FILE`` bytes per extra file: measured ~1 byte (the peak is ~1 MB either way);
the restore that planned the whole snapshot before writing held ~1,470 bytes per file.
The kept trees cost at most their budget.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PER_FILE = 64  # bytes of traced peak per extra file restored (measured: ~1; before: ~1,470)
WINDOW = 128
# decoded trees the checking walk keeps for the writing walk (``restore_plan.KEEP_BYTES``
# scaled down with the windows): the small restore's trees already fill it
KEEP = 512 << 10

_PROBE = r"""
import sys, tracemalloc, pathlib
from tests.helpers import make_store, open_test_store
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
n, base, window, keep = (int(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3]),
                         int(sys.argv[4]))
src = base / "src"
for i in range(n):
    d = src / f"d{i // 500:03d}"
    if i % 500 == 0:
        d.mkdir(parents=True)
    (d / f"f{i:06d}").write_bytes(b"%d " % i * 20)
st = make_store(base / "store")
backup(st, [str(src)], BackupOptions())
st.close()
st = open_test_store(base / "store")
st.load_index()
tracemalloc.start()
res = restore(st, "latest", str(base / "out"), window_entries=window, tree_keep=keep)
assert res.files == n and not res.failed, res
print(tracemalloc.get_traced_memory()[1])
"""


def _peak(n: int, base: Path, keep: int = 0) -> int:
    base.mkdir()
    r = subprocess.run([sys.executable, "-c", _PROBE, str(n), str(base), str(WINDOW),
                        str(keep)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


def test_restore_memory_does_not_grow_with_the_number_of_files(tmp_path: Path) -> None:
    small, large = 1000, 4000
    p_small = _peak(small, tmp_path / "small", KEEP)
    p_large = _peak(large, tmp_path / "large", KEEP)
    per_file = (p_large - p_small) / (large - small)
    assert per_file <= PER_FILE, (f"{per_file:.0f} B of traced peak per file restored "
                                  f"({p_small} B at {small} files, {p_large} B at {large})")


def test_kept_trees_cost_at_most_their_budget(tmp_path: Path) -> None:
    """The trees kept between the walks are bounded by ``tree_keep`` (an estimate from
    their plaintext that must not undercount): with 1 MiB of room the peak rises, by
    less than 1 MiB (measured: 0.39 MB, two 500-file trees and the one being walked)."""
    n, keep = 4000, 1 << 20
    without, with_ = _peak(n, tmp_path / "none", 0), _peak(n, tmp_path / "some", keep)
    assert 0 < with_ - without <= keep, (without, with_)
