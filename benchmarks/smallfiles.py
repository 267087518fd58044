"""Many small unique files: first backup and a re-backup, casbackup against restic.

Builds N files of 200-2,000 bytes (unique, deterministic from the seed; 1,000 per
directory) under WORKDIR/data -- put WORKDIR on a tmpfs (``/dev/shm``) so that the disk
is not what is measured -- then, per tool and in the same run: init, first backup,
re-backup with nothing changed; right before each tool's re-backup the tree is walked
with an lstat of every entry (``find DATA -printf '%s %T@\\n'``, output thrown away: issue
17 item 2's "walk+lstat" baseline). The first backup starts 3 s after the tree is built,
so no file is in the 2 s racy-entry window (``ops/dircache.py``), which would have the
re-backup read it again. Each step's wall time, CPU-seconds (user + sys of the
command and its children, ``os.wait4``) and peak RSS are printed and, with ``--json``,
written out.

Usage::

    python benchmarks/smallfiles.py --files 200000 --workdir /dev/shm/cb-small
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "smallfiles-bench"


def build(data: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        d = data / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        size = rng.randint(200, 2000)
        head = b"file %d seed %d\n" % (i, seed)
        (d / f"f{i:07d}.txt").write_bytes(head + rng.randbytes(size - len(head)).hex().encode()[
            : size - len(head)])


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}): {err.decode(errors='replace')}")
    return {"wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "rss_mib": round(ru.ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, default=Path("/dev/shm/cb-small"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--casbackup-cmd", help="command prefix (default: the checkout's .venv)")
    a = ap.parse_args(argv)
    work = a.workdir
    if work.exists():
        shutil.rmtree(work)
    data = work / "data"
    t0 = time.perf_counter()
    build(data, a.files, a.seed)
    print(f"{a.files} files in {time.perf_counter() - t0:.1f} s under {data}", flush=True)
    time.sleep(3.0)  # older than the racy window (dircache.RACY_NS, 2 s) at the first backup
    cas = shlex.split(a.casbackup_cmd) if a.casbackup_cmd else [str(REPO / ".venv" / "bin" /
                                                                 "casbackup")]
    env = {**os.environ, "CASBACKUP_PASSWORD": PASSWORD, "RESTIC_PASSWORD": PASSWORD,
           "CASBACKUP_CACHE_DIR": str(work / "cb-cache"),
           "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    tools = {
        "casbackup": ([*cas, "init", "--store", str(work / "cb")],
                      [*cas, "backup", "-q", "--store", str(work / "cb"), str(data)]),
        "restic": (["restic", "init", "-q", "-r", str(work / "restic")],
                   ["restic", "backup", "-q", "--host", "bench", "-r", str(work / "restic"),
                    str(data)]),
    }
    results: dict[str, dict[str, Any]] = {}
    walk = ["find", str(data), "-printf", "%s %T@\\n"]
    for step in ("init", "first backup", "unchanged re-backup"):
        for tool, (init, bk) in tools.items():
            if step == "unchanged re-backup":
                w = measure(walk, env)
                results.setdefault("walk+lstat", {})[f"before {tool}"] = w
                print(f"{'find':10} {'walk+lstat':20} {w['wall_s']:8.2f} s wall "
                      f"{w['cpu_s']:8.2f} CPU-s", flush=True)
            r = measure(init if step == "init" else bk, env)
            results.setdefault(tool, {})[step] = r
            print(f"{tool:10} {step:20} {r['wall_s']:8.2f} s wall {r['cpu_s']:8.2f} CPU-s "
                  f"{r['rss_mib']:7.1f} MiB", flush=True)
    for step in ("first backup", "unchanged re-backup"):
        c, r = results["casbackup"][step], results["restic"][step]
        print(f"casbackup/restic {step}: wall {c['wall_s'] / r['wall_s']:.2f}, "
              f"CPU {c['cpu_s'] / r['cpu_s']:.2f}")
    walks = sorted(results["walk+lstat"].values(), key=lambda w: w["wall_s"])
    w, c = walks[len(walks) // 2], results["casbackup"]["unchanged re-backup"]
    print(f"casbackup unchanged re-backup / walk+lstat (find): wall "
          f"{c['wall_s'] / w['wall_s']:.2f}, CPU {c['cpu_s'] / max(w['cpu_s'], 0.01):.2f}")
    if a.json:
        a.json.write_text(json.dumps({"files": a.files, "results": results}, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
