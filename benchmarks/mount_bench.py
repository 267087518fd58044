"""Browsing a backup through FUSE (issue #14 point 6): ``find`` over a mounted snapshot and
``cp -a`` of it out of the mount, for ``casbackup mount``, ``restic mount`` and ``borg
mount`` on the same data (the benchmark corpus, ``corpus.py``), in the same run.

    python benchmarks/mount_bench.py --workdir /tmp/cb-mount [--scale 0.1] [--runs 3]

Each run mounts afresh (nothing cached in the FUSE server or the kernel's caches of the
mount), times ``find SNAPDIR`` (the first walk: every directory listed, every entry
stat'ed) and then ``cp -a SNAPDIR/<corpus> OUT``, and reads the server's CPU seconds
(utime + stime from /proc) and peak RSS (VmHWM) before unmounting. The stores' own files
stay in the page cache between runs (they are not dropped: the machine is shared). A
tool whose binary (restic, borg in /work/borgvenv with pyfuse3) is missing is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench"
BORG = os.environ.get("BORG", "/work/borgvenv/bin/borg")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CASBACKUP_PASSWORD=PASSWORD, RESTIC_PASSWORD=PASSWORD, BORG_PASSPHRASE=PASSWORD,
               BORG_FUSE_IMPL="pyfuse3", PYTHONPATH=str(ROOT))
    return env


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Tool:
    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.repo = work / f"repo-{self.name}"

    def available(self) -> bool:
        return True

    def init_and_backup(self, data: Path) -> None:
        raise NotImplementedError

    def mount_cmd(self, mnt: Path) -> list[str]:
        raise NotImplementedError

    def snapdir(self, mnt: Path, data: Path) -> Path:
        """The mounted copy of DATA."""
        raise NotImplementedError


class Casbackup(Tool):
    name = "casbackup"
    cb = [sys.executable, "-m", "casbackup"]

    def init_and_backup(self, data: Path) -> None:
        subprocess.run([*self.cb, "init", "--store", str(self.repo), "-q"], env=_env(),
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*self.cb, "backup", "--store", str(self.repo), str(data), "-q"],
                       env=_env(), check=True)

    def mount_cmd(self, mnt: Path) -> list[str]:
        return [*self.cb, "mount", "--store", str(self.repo), str(mnt), "-q"]

    def snapdir(self, mnt: Path, data: Path) -> Path:
        return mnt / "snapshots" / "latest" / str(data).lstrip("/")


class Restic(Tool):
    name = "restic"

    def available(self) -> bool:
        return shutil.which("restic") is not None

    def init_and_backup(self, data: Path) -> None:
        env = _env() | {"RESTIC_CACHE_DIR": str(self.work / "restic-cache")}
        subprocess.run(["restic", "-r", str(self.repo), "init", "-q"], env=env, check=True)
        subprocess.run(["restic", "-r", str(self.repo), "backup", "-q", str(data)], env=env,
                       check=True)

    def mount_cmd(self, mnt: Path) -> list[str]:
        return ["restic", "-r", str(self.repo), "--cache-dir", str(self.work / "restic-cache"),
                "mount", "-q", str(mnt)]

    def snapdir(self, mnt: Path, data: Path) -> Path:
        return mnt / "snapshots" / "latest" / str(data).lstrip("/")


class Borg(Tool):
    name = "borg"

    def available(self) -> bool:
        ok = os.access(BORG, os.X_OK)
        return ok and subprocess.run([str(Path(BORG).parent / "python"), "-c",
                                      "import pyfuse3"], capture_output=True).returncode == 0

    def init_and_backup(self, data: Path) -> None:
        env = _env() | {"BORG_BASE_DIR": str(self.work / "borg-base")}
        subprocess.run([BORG, "init", "--encryption", "repokey-blake2", str(self.repo)],
                       env=env, check=True)
        subprocess.run([BORG, "create", "--compression", "zstd,3", f"{self.repo}::a",
                        str(data)], env=env, check=True)

    def mount_cmd(self, mnt: Path) -> list[str]:
        return [BORG, "mount", "-f", f"{self.repo}::a", str(mnt)]

    def snapdir(self, mnt: Path, data: Path) -> Path:
        return mnt / str(data).lstrip("/")


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def one_run(tool: Tool, data: Path, mnt: Path, out: Path) -> dict[str, float]:
    mnt.mkdir(exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    env = _env() | {"BORG_BASE_DIR": str(tool.work / "borg-base")}
    # cwd: ``python -m casbackup`` imports casbackup from the working directory first
    proc = subprocess.Popen(tool.mount_cmd(mnt), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        snap = tool.snapdir(mnt, data)
        while not (os.path.ismount(mnt) and snap.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{tool.name} mount failed")
            time.sleep(0.1)
        cpu0 = _proc_cpu(proc.pid)
        find_s = _timed(["find", str(snap)])
        cpu1 = _proc_cpu(proc.pid)
        cp_s = _timed(["cp", "-a", str(snap), str(out)])
        cpu2 = _proc_cpu(proc.pid)
        return {"find_s": find_s, "find_cpu_s": cpu1 - cpu0, "cp_s": cp_s,
                "cp_cpu_s": cpu2 - cpu1, "peak_rss_mb": _hwm(proc.pid) / 2**20}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/cb-mount")
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="casbackup,restic,borg")
    a = ap.parse_args()
    work = Path(a.workdir)
    corpus = work / "corpus"
    if not (corpus / "data").exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "corpus.py"), "build",
                        str(corpus), "--scale", str(a.scale)], check=True)
    data = corpus / "data"
    tools = [t(work) for t in (Casbackup, Restic, Borg) if t.name in a.tools.split(",")]
    for t in [t for t in tools if not t.available()]:
        print(f"{t.name}: not available, skipped")
        tools.remove(t)
    for t in tools:
        if not t.repo.exists():
            t.init_and_backup(data)
    results: dict[str, list[dict[str, float]]] = {t.name: [] for t in tools}
    for _ in range(a.runs):  # tool-major inside each run: each tool on the same state
        for t in tools:
            r = one_run(t, data, work / f"mnt-{t.name}", work / f"out-{t.name}")
            results[t.name].append(r)
            print(t.name, json.dumps({k: round(v, 2) for k, v in r.items()}), flush=True)
    print("\nmedians of", a.runs, "runs")
    base = {k: statistics.median(r[k] for r in results["casbackup"])
            for k in results["casbackup"][0]} if "casbackup" in results else {}
    for name, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        ratio = {k: med[k] / base[k] for k in ("find_s", "cp_s") if base.get(k)}
        print(f"{name:10s} " + "  ".join(f"{k} {v:.2f}" for k, v in med.items())
              + "   vs casbackup: " + "  ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))


if __name__ == "__main__":
    main()
