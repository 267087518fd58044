"""Restore in place after the benchmark's mutation step, against a full restore (issue #14).

The corpus (``corpus.py``) is backed up by casbackup and restic; then, per run, the corpus
is mutated (``corpus.mutate``: the same change set ``run.py``'s ``mutate`` step applies)
and the snapshot of the unmutated corpus is restored **over the corpus itself**::

    casbackup restore --overwrite if-changed --delete latest:DATA DATA

which must give back the backed-up tree exactly (fingerprint checked) while reading from
the store and writing only what the mutation changed. The same run times a full casbackup
restore into an empty directory and a full ``restic restore`` (restic 0.14 has no
``--overwrite``; a restic 0.17+ on PATH is used in place as well). Each step is a child
process measured with ``os.wait4`` (wall and CPU seconds) and ``/usr/bin/time``
(peak RSS). The page cache is
not dropped (the machine is shared): every figure is warm-cache.

Usage::

    python benchmarks/restore_inplace_bench.py --scale 0.2 --workdir /tmp/cb-rip --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

PASSWORD = "bench-password"


def run_child(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run CMD, return wall/CPU seconds and peak RSS (MiB) of that child alone."""
    # peak RSS from /usr/bin/time: a child forked from this (large) process reports at
    # least this process's RSS as its own ru_maxrss
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.perf_counter()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], env=env,
                             stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({code}): {err.read().decode()[-2000:]}")
        return {"wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
                "peak_rss_mib": round(int(rss.read().split()[-1]) / 1024, 1),
                "stdout": out.read()}


def summary(out: bytes) -> dict[str, Any]:
    lines = [json.loads(x) for x in out.splitlines() if x.strip().startswith(b"{")]
    return lines[-1] if lines else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cb-rip"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-restic", action="store_true")
    a = ap.parse_args(argv)
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    root = work / "corpus"
    data = root / "data"
    env = dict(os.environ, CASBACKUP_PASSWORD=PASSWORD, RESTIC_PASSWORD=PASSWORD,
               RESTIC_REPOSITORY=str(work / "restic"), CASBACKUP_CACHE_DIR=str(work / "cache"))
    cb = [sys.executable, "-m", "casbackup"]
    store = work / "store"
    for p in (store, work / "restic", root, work / "cache"):
        if p.exists():
            shutil.rmtree(p)
    corpus.build(root, scale=a.scale)
    base_fp = corpus.fingerprint(data)
    files, nbytes = corpus.tree_stats(data)
    subprocess.run([*cb, "init", "--store", str(store)], env=env, check=True,
                   capture_output=True)
    subprocess.run([*cb, "backup", "--store", str(store), str(data)], env=env, check=True,
                   capture_output=True)
    restic = shutil.which("restic") and not a.no_restic
    if restic:
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        subprocess.run(["restic", "backup", str(data)], env=env, check=True,
                       capture_output=True)
    results: dict[str, list[dict[str, Any]]] = {"inplace": [], "full": [], "restic_full": []}
    for run in range(a.runs):
        m = corpus.mutate(root)
        r = run_child([*cb, "restore", "--store", str(store), "--json", "--overwrite",
                       "if-changed", "--delete", f"latest:{data}", str(data)], env)
        s = summary(r.pop("stdout"))
        if corpus.fingerprint(data) != base_fp:
            raise SystemExit("in-place restore did not give back the backed-up tree")
        r.update(bytes_read=s.get("read_bytes"), bytes_written=s.get("written_bytes"),
                 files_written=s.get("files_restored"), deleted=s.get("files_deleted"),
                 mutation=m.get("last_mutation"))
        results["inplace"].append(r)
        tgt = work / "full"
        if tgt.exists():
            shutil.rmtree(tgt)
        r = run_child([*cb, "restore", "--store", str(store), "--json",
                       f"latest:{data}", str(tgt)], env)
        s = summary(r.pop("stdout"))
        r.update(bytes_read=s.get("read_bytes"), bytes_written=s.get("written_bytes"))
        results["full"].append(r)
        shutil.rmtree(tgt)
        if restic:
            r = run_child(["restic", "restore", "latest", "--target", str(tgt)], env)
            r.pop("stdout")
            results["restic_full"].append(r)
            shutil.rmtree(tgt)
        print(f"run {run + 1}: in place {results['inplace'][-1]['wall_s']} s "
              f"(cpu {results['inplace'][-1]['cpu_s']}), full {results['full'][-1]['wall_s']} s"
              f" (cpu {results['full'][-1]['cpu_s']})"
              + (f", restic full {results['restic_full'][-1]['wall_s']} s "
                 f"(cpu {results['restic_full'][-1]['cpu_s']})" if restic else ""),
              flush=True)
    out = {"scale": a.scale, "files": files, "bytes": nbytes,
           "restic": subprocess.run(["restic", "version"], capture_output=True,
                                    text=True).stdout.strip() if restic else None,
           "cache": "warm (not dropped)", **results}
    for k in ("wall_s", "cpu_s"):
        ip = [r[k] for r in results["inplace"]]
        out[f"full_over_inplace_{k}"] = [round(f / i, 1) for f, i in
                                         zip([r[k] for r in results["full"]], ip, strict=True)]
        if restic:
            out[f"restic_full_over_inplace_{k}"] = [
                round(f / i, 1) for f, i in
                zip([r[k] for r in results["restic_full"]], ip, strict=True)]
    print(json.dumps(out, indent=1, default=str))
    res_dir = Path(__file__).resolve().parent / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / f"restore-inplace-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
