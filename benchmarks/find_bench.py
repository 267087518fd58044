"""find over many snapshots (issue #14 point 4): a 10k-file tree (100 directories of 100
files) backed up N times (default 120), one file changed between backups, then
``casbackup find`` (and ``restic find`` on the same backups, when restic is on PATH) for
a rare name and for a pattern matching 10% of the files in every snapshot.

    python benchmarks/find_bench.py --workdir /tmp/cb-find [--snapshots 120]

Prints wall times and, for casbackup, how many trees ``find`` loaded (each distinct tree
once, whatever the number of snapshots).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench"


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/cb-find")
    ap.add_argument("--snapshots", type=int, default=120)
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    src = work / "src"
    for d in range(100):
        (src / f"dir-{d:03d}").mkdir(parents=True)
        for f in range(100):
            (src / f"dir-{d:03d}" / f"file-{d:03d}-{f:03d}.txt").write_text(f"{d} {f}\n")
    env = dict(os.environ, CASBACKUP_PASSWORD=PASSWORD, RESTIC_PASSWORD=PASSWORD,
               PYTHONPATH=str(ROOT))
    cas = [sys.executable, "-m", "casbackup"]
    restic = shutil.which("restic")
    store, rrepo = str(work / "store"), str(work / "restic")
    _run([*cas, "init", "--store", store], env)
    if restic:
        _run([restic, "init", "-q", "-r", rrepo], env)
    t_cas = t_restic = 0.0
    for i in range(a.snapshots):
        (src / f"dir-{i % 100:03d}" / f"file-{i % 100:03d}-000.txt").write_text(f"v{i}\n")
        t_cas += _run([*cas, "backup", "--store", store, str(src)], env)
        if restic:
            t_restic += _run([restic, "backup", "-q", "-r", rrepo, str(src)], env)
    print(f"{a.snapshots} snapshots of 10,000 files: casbackup backups {t_cas:.0f} s"
          + (f", restic {t_restic:.0f} s" if restic else ""))
    sys.path.insert(0, str(ROOT))
    from casbackup.ops.find import find
    from casbackup.ops.snapsel import SnapshotFilter, select
    from casbackup.store import open_store

    for pattern in ("file-042-042.txt", "*7.txt"):
        t = _run([*cas, "find", "--store", store, pattern], env)
        with open_store(store, lambda: PASSWORD) as st:
            res = find(st, [pattern], select(st, [], SnapshotFilter()))
        hits = sum(len(g.matches) for g in res.groups)
        line = (f"find {pattern!r}: casbackup {t:.2f} s ({hits} matches in "
                f"{len(res.groups)} snapshots, {res.trees_loaded} trees loaded)")
        if restic:
            line += f"; restic find {_run([restic, 'find', '-r', rrepo, pattern], env):.2f} s"
        print(line, flush=True)


if __name__ == "__main__":
    main()
