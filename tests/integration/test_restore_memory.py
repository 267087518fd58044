"""Restore memory against the number of files (issue #17 item 3), without timing.

A child process restores N small files with ``tracemalloc`` on and prints its peak of
traced Python memory; between two file counts the growth per file must stay within
``PER_FILE`` bytes. Today a restore holds ≈ 1.5 KiB per file (the decoded nodes, the blob
plan, the plan items: benchmarks/README.md, "Restore in place"), so this guards against
that growing; the issue's goal -- memory independent of the number of files -- needs a
streaming restore and would make the bound ~0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PER_FILE = 2048  # bytes of traced peak per extra file restored (measured: ~1,470)

_PROBE = r"""
import sys, tracemalloc, pathlib
from tests.helpers import make_store, open_test_store
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
n, base = int(sys.argv[1]), pathlib.Path(sys.argv[2])
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
tracemalloc.start()
restore(st, "latest", str(base / "out"))
print(tracemalloc.get_traced_memory()[1])
"""


def _peak(n: int, base: Path) -> int:
    base.mkdir()
    r = subprocess.run([sys.executable, "-c", _PROBE, str(n), str(base)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


def test_restore_memory_per_file_stays_bounded(tmp_path: Path) -> None:
    small, large = 1000, 4000
    p_small, p_large = _peak(small, tmp_path / "small"), _peak(large, tmp_path / "large")
    per_file = (p_large - p_small) / (large - small)
    assert per_file <= PER_FILE, f"{per_file:.0f} B of traced peak per file restored"
