"""Benchmark ``casbackup watch`` (issue #5): latency, cost of an incremental watch
snapshot against a full backup, and the CPU of an idle watcher.

Measures, with real processes (``python -m casbackup``) on a generated tree:

1. latency: a small tree is watched with ``--sync-to`` a paired replica; single-file
   writes are made one at a time; for each, wall time from the write to the ``snapshot``
   JSON line (committed) and to the ``synced`` line (in the replica), at the default
   ``--debounce 2`` and at ``--debounce 0.2`` (latency ≈ debounce + work).
2. cost: a tree of ``--files`` files (default 100,000) is backed up with ``casbackup
   backup`` (first backup, then an unchanged re-backup, which stats every file); then a
   watcher runs on it and one file is changed at a time; the watch snapshot's in-process
   ``duration_s`` and the watcher's CPU seconds for it are compared with the backups'
   in-process ``duration`` (from their JSON summaries) and CPU (wait4). Target: ≥ 20×
   cheaper than a full backup.
3. idle: the watcher's CPU seconds (utime + stime from /proc) over ``--idle-seconds``
   (default 30) with nothing changing.

Usage::

    python benchmarks/watch_bench.py --workdir /tmp/watch-bench
    python benchmarks/watch_bench.py --files 20000 --idle-seconds 10 --json out.json

Stdlib only; the checkout is put on PYTHONPATH. Figures are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"
TICK = os.sysconf("SC_CLK_TCK")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["CASBACKUP_PASSWORD"] = PASSWORD
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("CASBACKUP_STORE", None)
    return e


def cli(*args: str) -> tuple[dict[str, Any] | None, float, float]:
    """Run one command; (last JSON line or None, wall s, CPU s of the child)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "casbackup", *args], env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read() if p.stdout else b""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read() if p.stderr else b""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"casbackup {' '.join(args)} failed: {err.decode()[-2000:]}")
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else None), wall, ru.ru_utime + ru.ru_stime


def build_tree(root: Path, files: int, per_dir: int = 100, fanout: int = 10) -> None:
    """``files`` small files, ``per_dir`` per leaf directory, leaves ``fanout`` per parent."""
    rng = __import__("random").Random(5)
    leaves = (files + per_dir - 1) // per_dir
    n = 0
    for leaf in range(leaves):
        d = root / f"p{leaf // fanout:04d}" / f"l{leaf % fanout:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(min(per_dir, files - n)):
            (d / f"f{i:03d}.txt").write_bytes(rng.randbytes(rng.randint(50, 600)))
            n += 1


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


class Watch:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([sys.executable, "-m", "casbackup", "watch", "--json", *args],
                                  env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.q: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for raw in self.p.stdout:
            self.q.put((time.perf_counter(), json.loads(raw)))

    def wait(self, kind: str, timeout: float = 600) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                t, line = self.q.get(timeout=0.5)
            except queue.Empty:
                if self.p.poll() is not None:
                    err = self.p.stderr.read().decode() if self.p.stderr else ""
                    raise SystemExit(f"watch exited: {err[-2000:]}") from None
                continue
            if line["message_type"] == kind:
                return t, line
        raise SystemExit(f"timed out waiting for {kind}")

    def stop(self) -> int:
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)
        return self.p.returncode


def latency(work: Path, debounce: float, writes: int) -> dict[str, Any]:
    src, store, rep = work / f"lat-src-{debounce}", work / f"lat-store-{debounce}", \
        work / f"lat-replica-{debounce}"
    for p in (src, store, rep):
        shutil.rmtree(p, ignore_errors=True)
    build_tree(src, 1000)
    cli("init", "--store", str(store), "--json")
    cli("init", "--store", str(rep), "--from", str(store), "--json")
    w = Watch(str(src), "--store", str(store), "--sync-to", str(rep), "--debounce", str(debounce))
    try:
        w.wait("ready")
        snap, synced, inner = [], [], []
        for i in range(writes):
            t0 = time.perf_counter()
            (src / "p0000" / "l00" / f"w{i}.txt").write_text(f"write {i}\n")
            t1, line = w.wait("saved")
            t2, _ = w.wait("synced")
            snap.append(t1 - t0)
            synced.append(t2 - t0)
            inner.append(line["latency_seconds"])
            time.sleep(0.3)
    finally:
        w.stop()
    return {"debounce_s": debounce, "writes": writes,
            "to_snapshot_s": {"median": statistics.median(snap), "max": max(snap)},
            "to_replica_s": {"median": statistics.median(synced), "max": max(synced)},
            "watcher_latency_s": {"median": statistics.median(inner), "max": max(inner)}}


def cost(work: Path, files: int, changes: int, idle: float) -> dict[str, Any]:
    src, store = work / f"big-src-{files}", work / f"big-store-{files}"
    shutil.rmtree(store, ignore_errors=True)
    if not (src / ".built").exists():
        shutil.rmtree(src, ignore_errors=True)
        t = time.perf_counter()
        build_tree(src, files)
        (src / ".built").write_text("")
        print(f"built {files} files in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    cli("init", "--store", str(store), "--json")
    first, first_wall, first_cpu = cli("backup", "--store", str(store), str(src), "--json")
    again, again_wall, again_cpu = cli("backup", "--store", str(store), str(src), "--json")
    assert first is not None and again is not None
    w = Watch(str(src), "--store", str(store), "--debounce", "0.2", "--full-scan-every", "0")
    mid = max(0, (files + 99) // 100 // 2)
    leaf = src / f"p{mid // 10:04d}" / f"l{mid % 10:02d}"
    try:
        t_ready0 = time.perf_counter()
        w.wait("ready")
        startup = time.perf_counter() - t_ready0
        snaps = []
        for i in range(changes):
            time.sleep(0.5)
            c0 = cpu_of(w.p.pid)
            (leaf / f"f{i:03d}.txt").write_bytes(os.urandom(300))
            _, line = w.wait("saved")
            time.sleep(0.3)  # let the replica-less loop go idle again
            snaps.append({"duration_s": line["duration_seconds"], "cpu_s": cpu_of(w.p.pid) - c0,
                          "dirs_scanned": line["dirs_scanned"],
                          "dirs_reused": line["dirs_reused"]})
        time.sleep(1.0)
        c0, t0 = cpu_of(w.p.pid), time.perf_counter()
        time.sleep(idle)
        idle_cpu, idle_wall = cpu_of(w.p.pid) - c0, time.perf_counter() - t0
    finally:
        w.stop()
    steady = snaps[1:] or snaps
    med = statistics.median(s["duration_s"] for s in steady)
    med_cpu = statistics.median(s["cpu_s"] for s in steady)
    return {
        "files": files,
        "backup_first": {"duration_s": first["total_duration"], "wall_s": first_wall,
                         "cpu_s": first_cpu},
        "backup_unchanged": {"duration_s": again["total_duration"], "wall_s": again_wall,
                             "cpu_s": again_cpu},
        "watch_startup_s": startup,
        "watch_snapshots": snaps,
        "watch_snapshot_median_s": med,
        "watch_snapshot_median_cpu_s": med_cpu,
        "ratio_vs_first_backup": first["total_duration"] / med,
        "ratio_vs_unchanged_backup": again["total_duration"] / med,
        "idle": {"seconds": idle_wall, "cpu_s": idle_cpu,
                 "percent_of_one_core": 100 * idle_cpu / idle_wall},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/tmp/casbackup-watch-bench")
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=5)
    ap.add_argument("--writes", type=int, default=5)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--json", dest="json_out", help="Also write the results to this file.")
    a = ap.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    res = {"latency": [latency(work, d, a.writes) for d in (2.0, 0.2)],
           "cost": cost(work, a.files, a.changes, a.idle_seconds)}
    for lat in res["latency"]:
        print(f"latency, --debounce {lat['debounce_s']}: write -> snapshot median "
              f"{lat['to_snapshot_s']['median']:.2f} s (max {lat['to_snapshot_s']['max']:.2f}); "
              f"-> replica median {lat['to_replica_s']['median']:.2f} s "
              f"(max {lat['to_replica_s']['max']:.2f})")
    c = res["cost"]
    print(f"{c['files']} files: first backup {c['backup_first']['duration_s']:.2f} s "
          f"(wall {c['backup_first']['wall_s']:.2f}, CPU {c['backup_first']['cpu_s']:.2f}); "
          f"unchanged re-backup {c['backup_unchanged']['duration_s']:.2f} s "
          f"(wall {c['backup_unchanged']['wall_s']:.2f}, CPU {c['backup_unchanged']['cpu_s']:.2f})")
    print(f"watch snapshot after one change: median {c['watch_snapshot_median_s'] * 1000:.1f} ms "
          f"(CPU {c['watch_snapshot_median_cpu_s'] * 1000:.0f} ms; first after start "
          f"{c['watch_snapshots'][0]['duration_s'] * 1000:.1f} ms) -> "
          f"{c['ratio_vs_first_backup']:.0f}x cheaper than the first backup, "
          f"{c['ratio_vs_unchanged_backup']:.0f}x than an unchanged re-backup (target >= 20x)")
    print(f"idle watcher over {c['idle']['seconds']:.0f} s: CPU {c['idle']['cpu_s']:.2f} s "
          f"({c['idle']['percent_of_one_core']:.2f}% of one core); startup incl. initial "
          f"scan {c['watch_startup_s']:.1f} s")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
