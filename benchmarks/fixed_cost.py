"""The fixed cost of a command (issue #17; #12 item 1; #14): what ``snapshots``, ``ls latest``,
``cat config``, a 200-file backup and its restore cost on a small store and on a store
whose index names N blobs, for each checkout given and restic 0.14, interleaved in one
run (each round runs every tool once, each round in a rotated order, so the machine's
load falls on all alike).

The casbackup stores are made with the CLI's ``init`` (the default key settings, as a
user gets them); the big one gets N synthetic index entries (``index_bench.make_store``:
real sealed index objects naming packs that are not there). restic gets the same
200-file trees; its repository is small (restic has no cheap way to a 1M-blob one: its
figures at 1M blobs are in the scale section). Every step runs under ``/usr/bin/time
-v``; the table shows the median over the rounds of CPU seconds (user+sys) and wall, and
the baselines each casbackup command pays before its own work: ``python -c pass`` in this
venv, and scrypt alone at the store's key parameters (restic derives the same: N=2^15,
r=8, p=1 on this machine).

    python benchmarks/fixed_cost.py --checkout main=/work/main --checkout branch=. \\
        --blobs 1000000 --rounds 3 --workdir /tmp/fixed-bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_bench import PASSWORD, _cb, _env, make_store, small_tree, timed  # noqa: E402

STEPS = ("snapshots", "ls latest", "cat config", "backup 200 files", "restore 200 files")
SCRYPT = ("from cryptography.hazmat.primitives.kdf.scrypt import Scrypt; "
          "Scrypt(salt=bytes(32), length=32, n=2**15, r=8, p=1).derive(b'pw')")


def casbackup_steps(cb: list[str], store: Path, work: Path, seed: int) -> dict[str, list[str]]:
    s = ["--store", str(store)]
    return {"backup 200 files": [*cb, "backup", *s, str(small_tree(work / "src", seed))],
            "restore 200 files": [*cb, "restore", *s, "latest", str(work / "restore")],
            "snapshots": [*cb, "snapshots", *s], "ls latest": [*cb, "ls", *s, "latest"],
            "cat config": [*cb, "cat", *s, "config"]}


def restic_steps(repo: Path, work: Path, seed: int) -> dict[str, list[str]]:
    r = ["restic", "-r", str(repo), "-q"]
    return {"backup 200 files": [*r, "backup", str(small_tree(work / "src", seed))],
            "restore 200 files": [*r, "restore", "latest", "--target", str(work / "restore")],
            "snapshots": [*r, "snapshots"], "ls latest": [*r, "ls", "latest"],
            "cat config": [*r, "cat", "config"]}


def run_round(tools: dict[str, tuple[dict[str, str], Path]], restic_env: dict[str, str],
              work: Path, seed: int, out: dict[tuple[str, str], list[tuple[float, float]]]
              ) -> None:
    for label, (env, store) in tools.items():
        tw = work / label
        tw.mkdir(exist_ok=True)
        if label.startswith("restic"):
            steps, e = restic_steps(store, tw, seed), restic_env
        else:
            steps, e = casbackup_steps(_cb(Path(env["PYTHONPATH"])), store, tw, seed), env
        for step in STEPS[3:] + STEPS[:3]:  # backup first: the others read its snapshot
            shutil.rmtree(tw / "restore", ignore_errors=True)
            wall, cpu, _, _ = timed(steps[step], e)
            out.setdefault((label, step), []).append((cpu, wall))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkout", action="append", required=True, metavar="LABEL=PATH")
    ap.add_argument("--blobs", default="1000000", help="the big store's index entries (0: none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/fixed-bench"))
    a = ap.parse_args()
    work = a.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    checkouts = {lab: Path(p).resolve() for lab, p in (c.split("=", 1) for c in a.checkout)}
    first = next(iter(checkouts.values()))
    sizes = [0] + [int(n) for n in a.blobs.split(",") if int(n)]
    stores: dict[int, Path] = {}
    for n in sizes:
        stores[n] = work / f"store-{n}"
        make_store(stores[n], n, first)
    restic_env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(work / "rc"))
    subprocess.run(["restic", "-r", str(work / "restic"), "init", "-q"], env=restic_env,
                   check=True, capture_output=True)
    tools: dict[str, tuple[dict[str, str], Path]] = {}
    for n in sizes:
        for lab, path in checkouts.items():
            tools[f"{lab} ({n:,} blobs)"] = (_env(path, work / f"cache-{lab}-{n}"), stores[n])
    tools["restic (small)"] = ({}, work / "restic")
    # a round not counted: the first command after init builds the local index cache
    # (in proportion to the store: issue #12's one-off cost, not the fixed one)
    run_round(tools, restic_env, work, 0, {})
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for i in range(a.rounds):  # each round in another order: no tool always runs first
        k = i % len(tools)
        order = list(tools.items())
        run_round(dict(order[k:] + order[:k]), restic_env, work, i + 1, out)
        for lab, cmd in (("python -c pass", [sys.executable, "-c", "pass"]),
                         ("scrypt alone", [sys.executable, "-c", SCRYPT])):
            wall, cpu, _, _ = timed(cmd, dict(os.environ))
            out.setdefault((lab, "-"), []).append((cpu, wall))
    labels = list(dict.fromkeys(k[0] for k in out))
    print(f"median of {a.rounds} rounds: CPU s / wall s")
    print("| | " + " | ".join(STEPS) + " |")
    print("|---|" + "---:|" * len(STEPS))
    for lab in labels:
        cells = []
        for step in STEPS:
            runs = out.get((lab, step)) or out.get((lab, "-"))
            if not runs or (lab, "-") in out and step != STEPS[0]:
                cells.append("")
                continue
            cells.append(f"{statistics.median(c for c, _ in runs):.3f} / "
                         f"{statistics.median(w for _, w in runs):.2f}")
        print(f"| {lab} | " + " | ".join(cells) + " |")
    print("\nall runs (CPU s):")
    for (lab, step), runs in out.items():
        print(f"  {lab:28s} {step:18s} " + " ".join(f"{c:.3f}" for c, _ in runs))


if __name__ == "__main__":
    main()
