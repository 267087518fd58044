"""gc benchmark: casbackup ``forget`` + ``gc`` vs ``restic forget`` + ``prune`` vs
``borg prune`` + ``compact`` on the same 50-snapshot history (issue #3, item 8).

The history: the deterministic corpus of ``corpus.py`` (built at ``--scale``), then
``--snapshots`` rounds of (mutate once, back up with every tool), so each tool sees the
identical sequence of trees. Then, for every tool, measured one command at a time:

| step      | casbackup                     | restic                  | borg                  |
|-----------|-------------------------------|-------------------------|-----------------------|
| gc-idle   | ``gc`` (nothing to free)      | ``prune``               | ``compact``           |
| forget    | ``forget --keep-last K``      | ``forget --keep-last K``| ``prune --keep-last K``|
| gc        | ``gc`` (default 5% unused)    | ``prune`` (5% unused)   | ``compact``           |

Each command runs under a small ``python -S -I`` launcher that reports the command's
own ``wait4`` rusage (wall s, CPU s, peak RSS), as ``run.py`` does: a child forked from
a large driver would otherwise be charged the driver's RSS. Store sizes are the
apparent size of the repository directory before and after.

Usage::

    python benchmarks/gc_bench.py --scale 0.02 --snapshots 50 --keep-last 10 \
        --workdir /tmp/cb-gc-bench [--tools casbackup,restic,borg] [--results-dir DIR]

Only the standard library; restic and borg are skipped when not on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "gc-bench-password"
LAUNCHER = """
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, ru = os.wait4(pid, 0)
rc = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    json.dump({"rc": rc, "wall": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime,
               "maxrss_kib": ru.ru_maxrss}, f)
"""


@dataclass
class Step:
    tool: str
    step: str
    ok: bool
    wall_s: float
    cpu_s: float
    rss_mib: float
    store_before: int
    store_after: int
    error: str | None = None


def apparent_size(top: Path) -> int:
    return sum(p.stat().st_size for p in top.rglob("*") if p.is_file())


def measured(cmd: list[str], env: dict[str, str], log: Path) -> tuple[bool, float, float, float,
                                                                       str | None]:
    out = log.with_suffix(".rusage.json")
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        subprocess.run([sys.executable, "-S", "-I", "-c", LAUNCHER, str(out), *cmd], env=env,
                       stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    r = json.loads(out.read_text())
    err = None if r["rc"] == 0 else f"exit {r['rc']} (see {log})"
    return r["rc"] == 0, r["wall"], r["cpu"], r["maxrss_kib"] / 1024, err


class Tool:
    name = ""

    def __init__(self, work: Path) -> None:
        self.repo = work / f"repo-{self.name}"
        self.work = work

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def available(self) -> bool:
        return shutil.which(self.name) is not None

    def init(self) -> list[str]:
        raise NotImplementedError

    def backup(self, data: Path, i: int) -> list[str]:
        raise NotImplementedError

    def steps(self, keep: int) -> list[tuple[str, list[str]]]:
        raise NotImplementedError


class Casbackup(Tool):
    name = "casbackup"

    def available(self) -> bool:
        return True

    def env(self) -> dict[str, str]:
        e = dict(os.environ, CASBACKUP_PASSWORD=PASSWORD)
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                        e.get("PYTHONPATH", "")]))
        return e

    def _cb(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "casbackup", *args, "--store", str(self.repo)]

    def init(self) -> list[str]:
        return self._cb("init")

    def backup(self, data: Path, i: int) -> list[str]:
        return [*self._cb("backup"), str(data)]

    def steps(self, keep: int) -> list[tuple[str, list[str]]]:
        return [("gc-idle", self._cb("gc")),
                ("forget", self._cb("forget", "--keep-last", str(keep))),
                ("gc", self._cb("gc"))]


class Restic(Tool):
    name = "restic"

    def env(self) -> dict[str, str]:
        return dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(self.repo),
                    RESTIC_CACHE_DIR=str(self.work / "restic-cache"))

    def init(self) -> list[str]:
        return ["restic", "init", "--repository-version", "2"]

    def backup(self, data: Path, i: int) -> list[str]:
        return ["restic", "backup", "--host", "cb-bench", str(data)]

    def steps(self, keep: int) -> list[tuple[str, list[str]]]:
        return [("gc-idle", ["restic", "prune"]),
                ("forget", ["restic", "forget", "--keep-last", str(keep)]),
                ("gc", ["restic", "prune"])]


class Borg(Tool):
    name = "borg"

    def env(self) -> dict[str, str]:
        return dict(os.environ, BORG_PASSPHRASE=PASSWORD, BORG_BASE_DIR=str(self.work / "borg"),
                    BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

    def init(self) -> list[str]:
        return ["borg", "init", "--encryption", "repokey-blake2", str(self.repo)]

    def backup(self, data: Path, i: int) -> list[str]:
        return ["borg", "create", "--compression", "zstd,3", f"{self.repo}::snap-{i:03d}",
                str(data)]

    def steps(self, keep: int) -> list[tuple[str, list[str]]]:
        return [("gc-idle", ["borg", "compact", str(self.repo)]),
                ("forget", ["borg", "prune", "--keep-last", str(keep), str(self.repo)]),
                ("gc", ["borg", "compact", str(self.repo)])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--snapshots", type=int, default=50)
    ap.add_argument("--keep-last", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=REPO_ROOT / "benchmarks" / "work" / "gc")
    ap.add_argument("--tools", default="casbackup,restic,borg")
    ap.add_argument("--results-dir", type=Path, default=None)
    args = ap.parse_args(argv)

    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    classes = {"casbackup": Casbackup, "restic": Restic, "borg": Borg}
    tools = [classes[t](work) for t in args.tools.split(",")]
    for t in [t for t in tools if not t.available()]:
        print(f"skipping {t.name}: not on PATH")
    tools = [t for t in tools if t.available()]
    croot = work / "corpus"
    corpus.build(croot, args.scale, args.seed)
    data = croot / "data"
    files, size = corpus.tree_stats(data)
    print(f"corpus: {size / 1e6:.1f} MB, {files} files; {args.snapshots} snapshots, "
          f"keep-last {args.keep_last}")

    backup_s = {t.name: 0.0 for t in tools}
    for t in tools:
        subprocess.run(t.init(), env=t.env(), check=True, capture_output=True)
    for i in range(args.snapshots):
        if i:
            corpus.mutate(croot)
        for t in tools:
            t0 = time.perf_counter()
            r = subprocess.run(t.backup(data, i), env=t.env(), capture_output=True)
            backup_s[t.name] += time.perf_counter() - t0
            if r.returncode not in (0, 1 if t.name == "borg" else 0):
                raise SystemExit(f"{t.name} backup {i} failed: {r.stderr.decode()[-2000:]}")
    print("history built; backup time (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in backup_s.items()))

    results: list[Step] = []
    for t in tools:
        for step, cmd in t.steps(args.keep_last):
            before = apparent_size(t.repo)
            ok, wall, cpu, rss, err = measured(cmd, t.env(), work / "logs" / f"{t.name}-{step}.log")
            results.append(Step(t.name, step, ok, wall, cpu, rss, before, apparent_size(t.repo),
                                err))
    _print(results)
    if args.results_dir:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        out = args.results_dir / f"gc-{time.strftime('%Y-%m-%d')}.json"
        out.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "corpus": {"bytes": size, "files": files}, "backup_s": backup_s,
            "steps": [asdict(r) for r in results]}, indent=1) + "\n")
        print(f"wrote {out}")
    return 0 if all(r.ok for r in results) else 1


def _print(results: list[Step]) -> None:
    print(f"{'tool':10} {'step':8} {'wall s':>7} {'CPU s':>7} {'RSS MiB':>8} "
          f"{'store MiB before':>17} {'after':>7}")
    for r in results:
        print(f"{r.tool:10} {r.step:8} {r.wall_s:7.2f} {r.cpu_s:7.2f} {r.rss_mib:8.1f} "
              f"{r.store_before / 2**20:17.1f} {r.store_after / 2**20:7.1f}"
              + (f"  FAILED: {r.error}" if r.error else ""))
    by = {(r.tool, r.step): r for r in results}
    for other in ("restic", "borg"):
        a, b = by.get(("casbackup", "gc")), by.get((other, "gc"))
        if a and b and b.wall_s:
            print(f"casbackup/{other} gc: wall {a.wall_s / b.wall_s:.2f}x, "
                  f"RSS {a.rss_mib / b.rss_mib:.2f}x, store after "
                  f"{a.store_after / max(1, b.store_after):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
