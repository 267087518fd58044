"""gc beside backups (issue #10 point 5): a backup's wall time alone vs with gc running
beside it on the same store, and gc's wall time alone vs with a backup running, for
casbackup and restic on the same data (restic's ``prune`` needs an exclusive lock: beside
a running ``restic backup`` it fails at once, or waits with ``--retry-lock``).

Setup per tool: the corpus of ``corpus.py`` at ``--scale`` backed up, mutated, backed up
again, the first snapshot forgotten (garbage for gc), the corpus mutated once more. Each
measurement starts from a copy of that store state:

| step          | what runs                                                      |
|---------------|----------------------------------------------------------------|
| backup-alone  | the backup of the mutated corpus                               |
| gc-alone      | gc (``restic prune``)                                          |
| backup+gc     | both started together; each one's wall time and exit code      |

Usage::

    python benchmarks/gc_beside.py --scale 0.05 --workdir /tmp/cb-beside [--tools casbackup,restic]

Only the standard library; restic is skipped when not on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "gc-beside-password"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CASBACKUP_PASSWORD=PASSWORD, RESTIC_PASSWORD=PASSWORD,
               PYTHONPATH=str(REPO_ROOT))
    return env


def _cmds(tool: str, store: Path, data: Path) -> dict[str, list[str]]:
    if tool == "casbackup":
        cb = [sys.executable, "-m", "casbackup"]
        return {"init": [*cb, "init", "--store", str(store)],
                "backup": [*cb, "backup", "--store", str(store), str(data)],
                "forget": [*cb, "forget", "--store", str(store), "--keep-last", "1"],
                "gc": [*cb, "gc", "--store", str(store), "--max-wait", "0"]}
    r = ["restic", "-r", str(store), "--no-cache"]
    return {"init": [*r, "init"], "backup": [*r, "backup", str(data)],
            "forget": [*r, "forget", "--keep-last", "1"],
            "gc": [*r, "prune", "--max-unused", "5%"]}


def _run(argv: list[str]) -> dict[str, float | int | str]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=_env(), capture_output=True)
    return {"wall": round(time.perf_counter() - t0, 2), "rc": p.returncode}


def _together(a: list[str], b: list[str]) -> tuple[dict[str, float | int | str], ...]:
    """Start both at once; each one's own wall time (to its exit) and exit code."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(x, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for x in (a, b)]
    done: dict[int, float] = {}
    while len(done) < 2:
        for i, p in enumerate(procs):
            if i not in done and p.poll() is not None:
                done[i] = time.perf_counter() - t0
        time.sleep(0.02)
    out = []
    for i, p in enumerate(procs):
        err = p.stderr.read().decode().strip().splitlines() if p.stderr else []
        out.append({"wall": round(done[i], 2), "rc": p.returncode,
                    "err": err[-1][:160] if err and p.returncode else ""})
    return tuple(out)


def bench(tool: str, work: Path, scale: float) -> dict[str, dict[str, float | int | str]]:
    data_root = work / f"corpus-{tool}"
    corpus.build(data_root, scale=scale)
    data = data_root / "data"
    base = work / f"{tool}-base"
    shutil.rmtree(base, ignore_errors=True)
    c = _cmds(tool, base, data)
    for step in ("init", "backup"):
        assert _run(c[step])["rc"] == 0, (tool, step)
    corpus.mutate(data_root)
    assert _run(c["backup"])["rc"] == 0
    assert _run(c["forget"])["rc"] == 0
    corpus.mutate(data_root)
    res: dict[str, dict[str, float | int | str]] = {}
    for name in ("backup-alone", "gc-alone", "backup+gc"):
        store = work / f"{tool}-{name}"
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(base, store, symlinks=True)
        c = _cmds(tool, store, data)
        if name == "backup-alone":
            res[name] = _run(c["backup"])
        elif name == "gc-alone":
            res[name] = _run(c["gc"])
        else:
            b, g = _together(c["backup"], c["gc"])
            res["backup beside gc"], res["gc beside backup"] = b, g
            if tool == "restic":  # prune retried until the backup's lock is gone
                shutil.rmtree(store)
                shutil.copytree(base, store, symlinks=True)
                retry = ["sh", "-c", 'until "$@" >/dev/null 2>&1; do sleep 0.2; done', "sh",
                         *c["gc"]]
                b, g = _together(c["backup"], retry)
                res["backup beside retried prune"], res["prune retried until free"] = b, g
        shutil.rmtree(store, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cb-beside"))
    ap.add_argument("--tools", default="casbackup,restic")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = {}
    for tool in args.tools.split(","):
        if tool == "restic" and shutil.which("restic") is None:
            print("restic not on PATH: skipped", file=sys.stderr)
            continue
        out[tool] = bench(tool, args.workdir, args.scale)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
