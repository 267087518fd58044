"""gc after forget: peak RSS and CPU seconds of ``casbackup gc`` once half a store's
blobs are freed, for two checkouts alternating (issue #12: gc holds <= 32 B per blob).

The store (built once, with this checkout): ``scale_bench.build_tree`` of N small
unique files split into two trees of N/2 (one data blob each, two snapshots) and the
200-file tree of a third. Then ``--rounds`` rounds; in each, per code root (``--roots``,
alternating), on a fresh copy of the store and its cache (``cp -a``): ``gc`` with
nothing to free (*idle*), then ``forget`` of the first big snapshot and ``gc`` (*forget*),
each under ``/usr/bin/time`` (user + sys CPU s, max RSS). Per blob: (forget peak - idle
peak) / freed blobs.

Usage::

    python benchmarks/gc_forget_bench.py --n 100000 --work /tmp/gcf \\
        --roots /path/to/main,/path/to/branch [--rounds 3] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_bench import build_tree  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
PASSWORD = "gc-forget-bench"


def env(root: Path, cache: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(root), CASBACKUP_PASSWORD=PASSWORD,
                CASBACKUP_CACHE_DIR=str(cache))


def cb(root: Path, work: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "casbackup", *args, "--store",
                          str(work / "store")], env=env(root, work / "cache"), cwd=root,
                         capture_output=True, text=True, check=True)
    return out.stdout


def timed(root: Path, work: Path, *args: str) -> tuple[float, int]:
    """(CPU s, peak RSS KiB) of one command."""
    fmt = work / "time.txt"
    subprocess.run(["/usr/bin/time", "-o", str(fmt), "-f", "%U %S %M", sys.executable,
                    "-m", "casbackup", *args, "--store", str(work / "store")],
                   env=env(root, work / "cache"), cwd=root, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    u, s, m = fmt.read_text().split()[-3:]
    return float(u) + float(s), int(m)


def build(work: Path, n: int, reuse: bool) -> list[str]:
    base = work / "base"
    if not (reuse and (base / "store").exists()):
        _build(work, n)
    msgs = [json.loads(line) for line in cb(HERE, base, "snapshots", "--json").splitlines()]
    snaps = sorted((m for m in msgs if m["message_type"] == "snapshot"),
                   key=lambda m: m["time"])
    return [str(m["id"]) for m in snaps if str(m["paths"][0]).endswith("big0")]


def _build(work: Path, n: int) -> None:
    shutil.rmtree(work, ignore_errors=True)
    src = work / "src"
    for i, part in enumerate((n // 2, n - n // 2)):
        build_tree(src / f"big{i}", part, 1 + i)
    build_tree(src / "small", 200, 9)
    base = work / "base"
    base.mkdir(parents=True)
    cb(HERE, base, "init")
    for t in ("big0", "big1", "small"):
        cb(HERE, base, "backup", str(src / t))
    shutil.rmtree(src)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gc-forget-bench"))
    ap.add_argument("--roots", required=True, help="code roots, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="keep WORK/base if it is there")
    a = ap.parse_args()
    snaps = build(a.work, a.n, a.reuse)
    first = snaps[0]  # big0's
    roots = [Path(r) for r in a.roots.split(",")]
    freed = a.n // 2
    print(f"store: {a.n} + 200 blobs, forget {first} (frees {freed} data blobs)")
    print("round root idle_cpu idle_kib forget_cpu forget_kib B/freed")
    for rnd in range(a.rounds):
        for root in roots:
            copy = a.work / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(a.work / "base", copy, symlinks=True)
            icpu, ikib = timed(root, copy, "gc")
            cb(root, copy, "forget", first)
            fcpu, fkib = timed(root, copy, "gc")
            print(f"{rnd} {root} {icpu:.2f} {ikib} {fcpu:.2f} {fkib} "
                  f"{(fkib - ikib) * 1024 / freed:.0f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
