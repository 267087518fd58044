"""Scale benchmark (issue #12 item 5): what a command costs as the store grows.

For each size N (``--sizes 100k,1M``), builds a tree of N small *unique* files in
/dev/shm (so the disk is not what is measured; each file becomes one data blob), then,
for casbackup, restic and borg in the same run, on repositories also in /dev/shm::

    init          create an encrypted repository
    backup-big    first backup of the N-file tree
    backup-small  backup of a separate 200-file tree (into the same repository)
    restore-small restore of that 200-file snapshot into an empty directory
    snapshots     list snapshots (casbackup snapshots / restic snapshots / borg list)
    rebackup-big  unchanged re-backup of the N-file tree
    verify        casbackup verify / restic check / borg check (metadata, no data read)
    gc            casbackup gc / restic prune / borg compact (nothing to free)

Beside each tool's ``rebackup-big`` the same tree is walked by two baselines of what an
unchanged re-backup cannot avoid (issue 17 item 2, "walk+lstat"): ``find BIG -printf
'%s %T@\\n'`` (C: an lstat per entry, the output thrown away) and a Python ``os.scandir``
walk calling ``DirEntry.stat(follow_symlinks=False)`` (an lstat) on every entry; each
runs once right before each tool's re-backup, so with three tools there are three runs
of each in the same minutes (the report gives their median and the re-backups' ratios to
it).

``--steps verify,gc`` runs only those (with ``init`` and ``backup-big``, which build the
repository). ``--base-root DIR`` measures casbackup's verify and gc twice in the same run:
first with the code of another checkout (``DIR``, e.g. main: the column
``casbackup-base``), then with this one -- each gc on its own copy of the repository
(and of its cache), so both start from the same store.

Every step is one process run under ``/usr/bin/time -v``: wall seconds, CPU seconds
(user + sys) and peak RSS. The report gives, per size and tool, each step's figures and,
between consecutive sizes, the growth per blob (bytes of peak RSS and microseconds of
CPU time per added blob: wall time on a shared machine is mostly noise). A baseline size
(``--baseline``, 1k files) is always run too, so the growth leaves out what a command
costs at any size (startup, key derivation).

``--store-dir DIR`` puts the repositories, caches, restore targets and logs under DIR (e.g.
an ext4 directory) while the trees stay in ``--workdir``: a 1M-file tree alone takes
~4 GiB of a tmpfs. After the trees are built the run waits 3 s, so no file is within the
2 s racy-entry window of the first backup's start (``ops/dircache.py``: such a file is
read again by the re-backup, which then measures reading, not the walk).

Memory: a tmpfs file takes a 4 KiB page plus its inode, so N files need about
N x 5 KiB of RAM, plus the three repositories; the run refuses a size that would
leave less than 6 GiB of ``MemAvailable``. Everything is deleted after each size
(``--keep`` keeps it).

Usage::

    python benchmarks/scale_bench.py                      # 20k files: a few minutes
    python benchmarks/scale_bench.py --sizes 100k,1M --tools casbackup,restic,borg \
        --workdir /dev/shm/scale-trees --store-dir /tmp/scale-stores
    python benchmarks/scale_bench.py --sizes 1M --tools casbackup,restic \
        --steps verify,gc --base-root /work/main        # gc/verify before and after

Writes JSON to ``benchmarks/results/scale-<date>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "scale-bench-password"
SMALL_FILES = 200
SETTLE_S = 3.0  # > dircache.RACY_NS: the trees' files are older than the racy window
PER_DIR = 1000
STEPS = ("init", "backup-big", "backup-small", "restore-small", "snapshots", "rebackup-big",
         "verify", "gc")
TOOLS = ("casbackup", "restic", "borg")


def parse_count(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if m is None:
        raise SystemExit(f"scale_bench: bad size {text!r} (e.g. 100k, 1M)")
    return int(float(m.group(1)) * {"": 1, "k": 10**3, "m": 10**6}[m.group(2).lower()])


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def build_tree(root: Path, n: int, seed: int) -> None:
    """N unique files of 64-192 bytes, PER_DIR to a directory."""
    rnd = random.Random(seed)
    for d in range((n + PER_DIR - 1) // PER_DIR):
        dpath = root / f"d{d:05d}"
        dpath.mkdir(parents=True)
        for i in range(d * PER_DIR, min(n, (d + 1) * PER_DIR)):
            body = f"file {seed} {i}\n".encode() + rnd.randbytes(rnd.randint(48, 176))
            with open(dpath / f"f{i:08d}", "wb") as f:
                f.write(body)


# ----- tools ---------------------------------------------------------------------------


class Tool:
    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work  # where the repositories, caches, restores and logs go
        self.repo = work / "repos" / self.name
        self.env = dict(os.environ)

    def available(self) -> str | None:
        return None

    def argv(self, step: str, big: Path, small: Path, target: Path) -> list[str]:
        raise NotImplementedError

    def after(self, step: str, out: str) -> None:
        """Remember what a step printed (a snapshot id)."""


class Casbackup(Tool):
    name = "casbackup"

    def __init__(self, work: Path, cmd: list[str], root: Path = ROOT,
                 repo: Path | None = None, cache: Path | None = None) -> None:
        super().__init__(work)
        self.cmd = cmd
        if repo is not None:
            self.repo = repo
        self.env.update(CASBACKUP_PASSWORD=PASSWORD,
                        CASBACKUP_CACHE_DIR=str(cache or work / "cache" / "casbackup"),
                        PYTHONPATH=str(root))
        # measured as installed: pip compiles a package's bytecode, borg's venv has it;
        # without it every command compiled ~100 modules again (0.12-0.17 CPU-s)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.small_id = ""

    def available(self) -> str | None:
        p = subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "casbackup")],
                           capture_output=True, text=True)
        return None if p.returncode == 0 else f"compileall failed: {p.stderr[-300:]}"

    def argv(self, step: str, big: Path, small: Path, target: Path) -> list[str]:
        s = ["--store", str(self.repo)]
        c = self.cmd
        return {
            "init": [*c, "init", *s],
            "backup-big": [*c, "backup", str(big), "-q", *s],
            "backup-small": [*c, "backup", str(small), "--json", "-q", *s],
            "restore-small": [*c, "restore", self.small_id, str(target), *s],
            "snapshots": [*c, "snapshots", *s],
            "rebackup-big": [*c, "backup", str(big), "-q", *s],
            "verify": [*c, "verify", *s],
            "gc": [*c, "gc", *s],
        }[step]

    def after(self, step: str, out: str) -> None:
        if step == "backup-small":
            for line in reversed(out.splitlines()):
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("snapshot_id"):
                    self.small_id = str(doc["snapshot_id"])
                    return


class Restic(Tool):
    name = "restic"

    def __init__(self, work: Path, binary: str) -> None:
        super().__init__(work)
        self.binary = binary
        self.env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(work / "cache" / "restic"))
        self.small_id = ""

    def available(self) -> str | None:
        return None if shutil.which(self.binary) else f"{self.binary} not found"

    def argv(self, step: str, big: Path, small: Path, target: Path) -> list[str]:
        r = [self.binary, "-r", str(self.repo)]
        return {
            "init": [*r, "init"],
            "backup-big": [*r, "backup", "-q", str(big)],
            "backup-small": [*r, "backup", "--json", "-q", str(small)],
            "restore-small": [*r, "restore", self.small_id, "--target", str(target)],
            "snapshots": [*r, "snapshots"],
            "rebackup-big": [*r, "backup", "-q", str(big)],
            "verify": [*r, "check"],
            "gc": [*r, "prune"],
        }[step]

    def after(self, step: str, out: str) -> None:
        if step == "backup-small":
            for line in reversed(out.splitlines()):
                doc = json.loads(line)
                if doc.get("message_type") == "summary":
                    self.small_id = str(doc["snapshot_id"])
                    return


class Borg(Tool):
    name = "borg"

    def __init__(self, work: Path, binary: str) -> None:
        super().__init__(work)
        self.binary = binary
        self.env.update(BORG_PASSPHRASE=PASSWORD, BORG_BASE_DIR=str(work / "cache" / "borg"),
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

    def available(self) -> str | None:
        return None if shutil.which(self.binary) else f"{self.binary} not found"

    def argv(self, step: str, big: Path, small: Path, target: Path) -> list[str]:
        b, r = self.binary, str(self.repo)
        return {
            "init": [b, "init", "-e", "repokey-blake2", r],
            "backup-big": [b, "create", "--compression", "zstd,3", f"{r}::big", str(big)],
            "backup-small": [b, "create", "--compression", "zstd,3", f"{r}::small", str(small)],
            # borg extracts into the working directory (set to the target by ``run_step``)
            "restore-small": [b, "extract", f"{r}::small"],
            "snapshots": [b, "list", r],
            "rebackup-big": [b, "create", "--compression", "zstd,3", f"{r}::big2", str(big)],
            "verify": [b, "check", r],
            "gc": [b, "compact", r],
        }[step]


# ----- measuring -----------------------------------------------------------------------


def _time_fields(text: str) -> dict[str, Any]:
    """user_s, sys_s, cpu_s and rss_kib from ``/usr/bin/time -v``'s report."""
    out: dict[str, Any] = {}
    for key, pat in (("user_s", r"User time \(seconds\): ([\d.]+)"),
                     ("sys_s", r"System time \(seconds\): ([\d.]+)"),
                     ("rss_kib", r"Maximum resident set size \(kbytes\): (\d+)")):
        m = re.search(pat, text)
        out[key] = float(m.group(1)) if m else None
    if out["user_s"] is not None and out["sys_s"] is not None:
        out["cpu_s"] = round(out["user_s"] + out["sys_s"], 3)
    return out


def run_step(tool: Tool, step: str, big: Path, small: Path, work: Path) -> dict[str, Any]:
    target = work / "restore" / tool.name
    if step == "restore-small":
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
    argv = tool.argv(step, big, small, target)
    tfile = work / "logs" / f"{tool.name}-{step}.time"
    tfile.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v", "-o", str(tfile), *argv], env=tool.env,
                       cwd=target if step == "restore-small" else work,
                       capture_output=True, text=True, errors="replace")
    wall = time.monotonic() - t0
    out: dict[str, Any] = {"ok": p.returncode == 0, "wall_s": round(wall, 3)}
    if p.returncode != 0:
        out["error"] = (p.stderr or p.stdout)[-500:]
    out.update(_time_fields(tfile.read_text() if tfile.exists() else ""))
    if step == "restore-small" and p.returncode == 0:
        files = sum(len(f) for _, _, f in os.walk(target))
        out["files_restored"] = files
        if files != SMALL_FILES:
            out["ok"] = False
            out["error"] = f"restored {files} files, expected {SMALL_FILES}"
    if p.returncode == 0:
        try:
            tool.after(step, p.stdout)
        except (ValueError, KeyError) as e:
            out["ok"] = False
            out["error"] = f"could not read the step's output: {e}"
    return out


WALK_PY = r"""
import os, sys
def walk(path):
    n = 0
    with os.scandir(path) as it:
        for e in it:
            e.stat(follow_symlinks=False)
            n += 1
            if e.is_dir(follow_symlinks=False):
                n += walk(e.path)
    return n
print(walk(sys.argv[1]))
"""
WALKS = {"walk-find": lambda big: ["find", str(big), "-printf", "%s %T@\\n"],
         "walk-python": lambda big: [sys.executable, "-c", WALK_PY, str(big)]}


def run_walk(name: str, big: Path, work: Path) -> dict[str, Any]:
    """One walk+lstat baseline of the big tree (stdout thrown away), under /usr/bin/time."""
    tfile = work / "logs" / f"{name}.time"
    tfile.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v", "-o", str(tfile), *WALKS[name](big)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out: dict[str, Any] = {"ok": p.returncode == 0, "wall_s": round(time.monotonic() - t0, 3)}
    if p.returncode != 0:
        out["error"] = p.stderr[-500:]
    out.update(_time_fields(tfile.read_text() if tfile.exists() else ""))
    return out


BASE = "casbackup-base"  # the column of ``--base-root``'s code


def _base_step(tool: Casbackup, base_root: Path, step: str, big: Path, small: Path,
               work: Path) -> dict[str, Any]:
    """``step`` (verify or gc) with the code of ``base_root``, on a copy of the repository
    and cache for gc (it writes), so this checkout's step then starts from the same store."""
    repo, cache = tool.repo, work / "cache" / "casbackup"
    if step == "gc":
        repo, cache = tool.repo.with_name("casbackup-base"), work / "cache" / BASE
        shutil.copytree(tool.repo, repo, symlinks=True)
        if (work / "cache" / "casbackup").exists():
            shutil.copytree(work / "cache" / "casbackup", cache, symlinks=True)
    base = Casbackup(work, tool.cmd, base_root, repo, cache)
    base.name = BASE
    try:
        return run_step(base, step, big, small, work)
    finally:
        if step == "gc":
            shutil.rmtree(repo, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)


def on_tmpfs(path: Path) -> bool:
    """Whether PATH is on a tmpfs (its files are memory), from /proc/mounts."""
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        mnt = parts[1]
        if str(path.resolve()).startswith(mnt.rstrip("/") + "/") and len(mnt) > len(best):
            best, kind = mnt, parts[2]
    return kind == "tmpfs"


def bench_size(n: int, tools: list[Tool], work: Path, keep: bool,
               steps: tuple[str, ...] = STEPS, base_root: Path | None = None,
               trees: Path | None = None) -> dict[str, Any]:
    """One size: build the trees under ``trees`` (default ``work``), run every tool's steps
    with its repository under ``work``, delete both (unless ``keep``)."""
    trees = trees or work
    # on a tmpfs the tree is memory; on a disk it is page cache, which the kernel reclaims
    need = (n * 5 * 1024 if on_tmpfs(trees) else 0) + (1 << 30)
    if mem_available() - need < (6 << 30):  # never leave a shared machine under 6 GiB
        raise SystemExit(f"scale_bench: {n} files need about {need >> 20} MiB of "
                         f"/dev/shm but only {mem_available() >> 20} MiB are available")
    inodes = os.statvfs(trees).f_favail  # tmpfs has an inode limit too (a file, a link)
    if inodes < n + n // PER_DIR + 100_000:
        raise SystemExit(f"scale_bench: {n} files need as many inodes on {trees}; "
                         f"only {inodes} are free")
    big, small = trees / "data" / "big", trees / "data" / "small"
    t0 = time.monotonic()
    build_tree(big, n, seed=1)
    build_tree(small, SMALL_FILES, seed=2)
    print(f"[{n}] built {n} + {SMALL_FILES} files in {time.monotonic() - t0:.1f} s", flush=True)
    time.sleep(SETTLE_S)
    results: dict[str, Any] = {}
    try:
        for tool in tools:
            res: dict[str, Any] = {}
            for step in steps:
                if step == "rebackup-big":  # the walk baselines, in the same minute
                    for name in WALKS:
                        runs = results.setdefault(name, {})
                        r = run_walk(name, big, work)
                        runs[f"walk#{len(runs) + 1}"] = r
                        _print(n, name, f"walk#{len(runs)}", r)
                if (base_root is not None and isinstance(tool, Casbackup)
                        and step in ("verify", "gc")):
                    r = _base_step(tool, base_root, step, big, small, work)
                    results.setdefault(BASE, {})[step] = r
                    _print(n, BASE, step, r)
                r = run_step(tool, step, big, small, work)
                res[step] = r
                _print(n, tool.name, step, r)
                if not r["ok"] and step == "init":
                    break
            results[tool.name] = res
            if not keep:  # the next tool gets the memory back
                shutil.rmtree(tool.repo, ignore_errors=True)
                shutil.rmtree(work / "cache" / tool.name, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(trees / "data", ignore_errors=True)
            for sub in ("data", "restore", "repos", "cache"):
                shutil.rmtree(work / sub, ignore_errors=True)
    return results


def _print(n: int, name: str, step: str, r: dict[str, Any]) -> None:
    print(f"[{n}] {name:9s} {step:13s} {r['wall_s']:8.2f} s  "
          f"cpu {r.get('cpu_s') or 0:7.2f} s  rss {(r['rss_kib'] or 0) / 1024:7.1f} MiB"
          + ("" if r["ok"] else f"  FAILED: {r.get('error', '')[-200:]}"), flush=True)


def report(sizes: list[int], res: dict[int, dict[str, Any]], tools: list[str]) -> str:
    lines = []
    for n in sizes:
        lines.append(f"\n### {n:,} files (≈ {n:,} data blobs)\n")
        lines.append("| step | " + " | ".join(f"{t} wall s (CPU s) | {t} MiB" for t in tools)
                     + " |")
        lines.append("|---|" + "---:|---:|" * len(tools))
        for step in STEPS[1:]:
            cells = []
            for t in tools:
                r = res[n].get(t, {}).get(step)
                if r is None or not r["ok"]:
                    cells += ["failed" if r else "-", "-"]
                else:
                    cells += [f"{r['wall_s']:.2f} ({r.get('cpu_s') or 0:.2f})",
                              f"{(r['rss_kib'] or 0) / 1024:.0f}"]
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
    if len(sizes) >= 1:
        lines.append("\nGrowth per blob between consecutive sizes (with one size: "
                     "figure / N): µs of CPU time (user + sys; wall time on a shared "
                     "machine is noise), bytes of peak RSS\n")
        lines.append("| step | sizes | " + " | ".join(f"{t} µs | {t} B" for t in tools) + " |")
        lines.append("|---|---|" + "---:|---:|" * len(tools))
        pairs = list(zip(sizes, sizes[1:], strict=False)) or [(0, sizes[0])]
        for step in STEPS[1:]:
            for a, b in pairs:
                cells = []
                for t in tools:
                    rb = res[b].get(t, {}).get(step)
                    ra = res[a].get(t, {}).get(step) if a else {"ok": True, "cpu_s": 0,
                                                               "rss_kib": 0}
                    if not rb or not ra or not rb["ok"] or not ra["ok"]:
                        cells += ["-", "-"]
                        continue
                    dn = b - a
                    us = ((rb.get("cpu_s") or 0) - (ra.get("cpu_s") or 0)) * 1e6 / dn
                    by = ((rb["rss_kib"] or 0) - (ra["rss_kib"] or 0)) * 1024 / dn
                    cells += [f"{us:.1f}", f"{by:.0f}"]
                lines.append(f"| {step} | {a:,}→{b:,} | " + " | ".join(cells) + " |")
    lines += _walk_report(sizes, res, tools)
    lines += _peer_report(sizes, res, tools)
    return "\n".join(lines)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _walk_report(sizes: list[int], res: dict[int, dict[str, Any]], tools: list[str]
                 ) -> list[str]:
    """The walk+lstat baselines (median of their runs) and each re-backup's ratio to them."""
    if not any(w in res[n] for n in sizes for w in WALKS):
        return []
    lines = ["\nUnchanged re-backup against walk+lstat of the same tree (median of the "
             "baseline's runs, one before each tool's re-backup; wall s / CPU s)\n",
             "| files | walk-find runs | walk-python runs | "
             + " | ".join(f"{t} rebackup | {t} / find (wall, CPU) | {t} / python (wall, CPU)"
                          for t in tools) + " |",
             "|---|---|---|" + "---|---|---|" * len(tools)]
    for n in sizes:
        med: dict[str, tuple[float, float]] = {}
        cells = []
        for w in WALKS:
            runs = [r for r in res[n].get(w, {}).values() if r["ok"]]
            cells.append(", ".join(f"{r['wall_s']:.2f}/{r.get('cpu_s') or 0:.2f}" for r in runs)
                         or "-")
            if runs:
                med[w] = (_median([r["wall_s"] for r in runs]),
                          _median([r.get("cpu_s") or 0 for r in runs]))
        for t in tools:
            r = res[n].get(t, {}).get("rebackup-big")
            if r is None or not r["ok"]:
                cells += ["-", "-", "-"]
                continue
            cells.append(f"{r['wall_s']:.2f} / {r.get('cpu_s') or 0:.2f}")
            for w in WALKS:
                if w in med and med[w][0] > 0 and med[w][1] > 0:
                    cells.append(f"{r['wall_s'] / med[w][0]:.2f}, "
                                 f"{(r.get('cpu_s') or 0) / med[w][1]:.2f}")
                else:
                    cells.append("-")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return lines


def _peer_report(sizes: list[int], res: dict[int, dict[str, Any]], tools: list[str]
                 ) -> list[str]:
    """casbackup's figure over the best peer's (the lowest of restic's and borg's), per
    step: below 1 casbackup is ahead."""
    peers = [t for t in tools if t in ("restic", "borg")]
    if "casbackup" not in tools or not peers:
        return []
    lines = ["\ncasbackup / best peer (the lower of " + " and ".join(peers) + "; < 1: "
             "casbackup ahead): wall, CPU, peak RSS, each against that metric's best peer\n",
             "| step | " + " | ".join(f"{n:,}" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for step in STEPS[1:]:
        cells = []
        for n in sizes:
            c = res[n].get("casbackup", {}).get(step)
            ps = [res[n].get(t, {}).get(step) for t in peers]
            ps = [r for r in ps if r and r["ok"]]
            if not c or not c["ok"] or not ps:
                cells.append("-")
                continue
            part = []
            for key in ("wall_s", "cpu_s", "rss_kib"):
                best = min(float(r.get(key) or 0) for r in ps)
                part.append(f"{float(c.get(key) or 0) / best:.2f}" if best > 0 else "-")
            cells.append(" / ".join(part))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


_LOG_RE = re.compile(r"^\[(\d+)\] (\S+)\s+(\S+)\s+([\d.]+) s  cpu\s+([\d.]+) s  rss\s+([\d.]+) MiB"
                     r"(  FAILED)?")


def read_results(path: Path) -> dict[int, dict[str, Any]]:
    """The results of a run from its JSON file or from the lines it printed."""
    text = path.read_text()
    if path.suffix == ".json":
        return {int(k): v for k, v in json.loads(text)["results"].items()}
    res: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        m = _LOG_RE.match(line)
        if m:
            n, tool, step, wall, cpu, rss, failed = m.groups()
            res.setdefault(int(n), {}).setdefault(tool, {})[step] = {
                "ok": not failed, "wall_s": float(wall), "cpu_s": float(cpu),
                "rss_kib": float(rss) * 1024}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20k", help="comma-separated file counts (default 20k)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--workdir", default="/dev/shm/casbackup-scale-bench")
    ap.add_argument("--casbackup-cmd", default=f"{sys.executable} -m casbackup")
    ap.add_argument("--restic", default="restic")
    ap.add_argument("--borg", default="/opt/borg145/bin/borg")
    ap.add_argument("--store-dir", metavar="DIR", help="put the repositories, caches, "
                    "restores and logs here, the trees in --workdir (default: all there)")
    ap.add_argument("--baseline", default="1k",
                    help="a small size always run too, so growth per blob leaves out the "
                    "fixed cost of a command (0: none)")
    ap.add_argument("--keep", action="store_true", help="keep the trees and repositories")
    ap.add_argument("--steps", default=",".join(STEPS),
                    help="the steps to run (init and backup-big always run: they build "
                    "the repository)")
    ap.add_argument("--base-root", metavar="DIR",
                    help="also run casbackup's verify and gc with the code of this "
                    "checkout (column casbackup-base), before this one's, same store")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--label", default="", help="a label for the JSON file name")
    ap.add_argument("--report", metavar="FILE", help="print the tables of an earlier run: "
                    "its JSON, or its printed log (a run stopped part-way)")
    args = ap.parse_args()
    if args.report:
        res_ = read_results(Path(args.report))
        names = [t for t in (*TOOLS, BASE) if any(t in r for r in res_.values())]
        print(report(sorted(res_), res_, names))
        return
    sizes = sorted({parse_count(s) for s in args.sizes.split(",")}
                   | ({parse_count(args.baseline)} if args.baseline != "0" else set()))
    wanted = set(args.steps.split(",")) | {"init", "backup-big"}
    if not wanted <= set(STEPS):
        raise SystemExit(f"scale_bench: unknown step(s) {', '.join(sorted(wanted - set(STEPS)))}")
    steps = tuple(s for s in STEPS if s in wanted)
    trees = Path(args.workdir)
    work = Path(args.store_dir) if args.store_dir else trees
    for d in {trees, work}:
        if d.exists():
            raise SystemExit(f"scale_bench: {d} exists (a run in progress, or left by "
                             "--keep): remove it first")
    for d in {trees, work}:
        d.mkdir(parents=True)
    tools: list[Tool] = []
    for name in args.tools.split(","):
        tool: Tool
        if name == "casbackup":
            tool = Casbackup(work, args.casbackup_cmd.split())
        elif name == "restic":
            tool = Restic(work, args.restic)
        elif name == "borg":
            tool = Borg(work, args.borg)
        else:
            raise SystemExit(f"scale_bench: unknown tool {name!r}")
        why = tool.available()
        if why:
            print(f"skipping {name}: {why}", file=sys.stderr)
            continue
        tools.append(tool)
    res: dict[int, dict[str, Any]] = {}
    try:
        for n in sizes:
            for t in tools:  # fresh repositories per size
                t.repo.parent.mkdir(parents=True, exist_ok=True)
            res[n] = bench_size(n, tools, work, args.keep, steps,
                                base_root=Path(args.base_root) if args.base_root else None,
                                trees=trees)
    finally:
        if not args.keep:
            for d in {trees, work}:
                shutil.rmtree(d, ignore_errors=True)
    names = [t.name for t in tools] + ([BASE] if args.base_root else [])
    table = report(sizes, res, names)
    print(table)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.date.today().isoformat()
    path = out / f"scale-{stamp}{'-' + args.label if args.label else ''}.json"
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    path.write_text(json.dumps({"sizes": sizes, "commit": rev, "results":
                                {str(k): v for k, v in res.items()}}, indent=1) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
