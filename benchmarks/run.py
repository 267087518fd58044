"""Benchmark casbackup against restic and borg on the same corpus, in the same run.

Builds (or reuses) a deterministic corpus (see ``corpus.py``), then runs the steps
below step-major: every tool does a step on the same corpus state before the corpus
moves on, so each tool sees byte-identical data at each step::

    init            create an encrypted repository
    backup          first backup of the corpus
    backup-unchanged  second backup, nothing changed
    mutate          corpus.mutate() once (not a tool step)
    backup-mutated  backup after the mutation
    restore         full restore of the latest snapshot into an empty directory
                    (checked against the source tree's fingerprint, untimed)
    verify          casbackup verify --read-data / restic check --read-data /
                    borg check --verify-data

Each tool step is one child process, measured with ``os.wait4``: wall seconds, CPU
seconds (user + sys of the child and the children it waited for) and peak RSS
(``ru_maxrss``). After each step the repository's apparent size is recorded. MB/s is
the corpus size (10^6 bytes) of the backed-up state divided by wall time, for every
step, so the figures compare across tools. The page
cache is dropped before every timed step when ``/proc/sys/vm/drop_caches`` is writable
(root), otherwise the run is reported as warm-cache.

Usage::

    python benchmarks/run.py --scale 0.1 --workdir /tmp/cb-bench
    python benchmarks/run.py --tools restic,borg --steps init,backup,restore

Prints a table and the casbackup/restic and casbackup/borg ratios checked against the
targets, and writes JSON to ``benchmarks/results/<date>.json``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402
import corpus  # noqa: E402
import realtree  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
STEPS = ("init", "backup", "backup-unchanged", "mutate", "backup-mutated", "restore", "verify")
BACKUP_STEPS = ("backup", "backup-unchanged", "backup-mutated")
ALL_TOOLS = ("casbackup", "restic", "borg", baselines.NAME)
MARKER = ".casbackup-bench"
PASSWORD = "casbackup-bench-password"
MB = 1_000_000
MIB = 1024 * 1024


# ----------------------------------------------------------------------------- measuring


@dataclass
class Measure:
    ok: bool
    rc: int | None
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    maxrss_mib: float
    error: str | None = None


def _tail(path: Path, start: int, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


# The measured command is started by this small launcher (a fresh `python -S -I`, ~8 MiB)
# rather than by this process: Linux charges a child's ru_maxrss with the RSS of the
# process it was forked from (the old mm's high-water mark at execve), so a child forked
# from a benchmark driver holding hundreds of MiB would report at least that. The
# launcher times the command and reports the command's own wait4 rusage.
LAUNCHER = """
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
try:
    pid = os.posix_spawnp(argv[0], argv, os.environ)
except OSError as e:
    print(f"cannot start {argv[0]}: {e}", file=sys.stderr)
    sys.exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
rc = os.waitstatus_to_exitcode(status)
with open(out, "w") as f:
    json.dump({"rc": rc, "wall": wall, "utime": ru.ru_utime, "stime": ru.ru_stime,
               "maxrss_kib": ru.ru_maxrss}, f)
sys.exit(rc if 0 <= rc < 256 else 128 - rc)
"""


def run_measured(
    cmd: list[str], env: dict[str, str], cwd: Path | None, log_path: Path, timeout: float
) -> Measure:
    """Run one command with stdout+stderr to ``log_path``; measure it with wait4.

    Wall time, user/sys CPU and peak RSS are those of the command itself (and of any
    children it waited for), as reported by the launcher's ``os.wait4``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    result_path = log_path.with_suffix(".rusage.json")
    result_path.unlink(missing_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n$ {shlex.join(cmd)}\n".encode())
        log.flush()
        start = log.tell()
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-S", "-I", "-c", LAUNCHER, str(result_path), *cmd],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            return Measure(False, None, 0.0, 0.0, 0.0, 0.0, 0.0, f"cannot start: {e}")
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        rc: int | None = os.waitstatus_to_exitcode(status)
        proc.returncode = rc  # reaped by wait4; keep Popen from waiting again
    try:
        r = json.loads(result_path.read_text())
        rc, wall = r["rc"], r["wall"]
        user, system, maxrss_kib = r["utime"], r["stime"], r["maxrss_kib"]
    except (OSError, ValueError, KeyError):
        # Launcher killed or the command could not start: whole-launcher figures.
        user, system, maxrss_kib = ru.ru_utime, ru.ru_stime, ru.ru_maxrss
    error = None
    if timed_out.is_set():
        error = f"timed out after {timeout:.0f} s\n{_tail(log_path, start)}"
    elif rc != 0:
        error = f"exit status {rc}\n{_tail(log_path, start)}"
    return Measure(
        ok=error is None,
        rc=rc,
        wall_s=wall,
        cpu_s=user + system,
        user_s=user,
        sys_s=system,
        maxrss_mib=maxrss_kib / 1024,
        error=error,
    )


def quick(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a short untimed helper command; (rc, stdout+stderr)."""
    try:
        p = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    return p.returncode, (p.stdout + p.stderr).strip()


def apparent_size(top: Path) -> int:
    """Sum of apparent sizes of the files under ``top`` (like ``du -sb`` minus dirs)."""
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def rmtree(path: Path, workdir: Path) -> None:
    """Remove ``path``, which must be inside the benchmark workdir."""
    path = path.resolve()
    if workdir.resolve() not in path.parents:
        raise RuntimeError(f"refusing to delete {path}: not inside {workdir}")
    if path.exists():
        shutil.rmtree(path)


# ----------------------------------------------------------------------------- tools


class Tool:
    name = ""

    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.repo = workdir / "repos" / self.name
        self.cache = workdir / "cache" / self.name
        self.broken: str | None = None
        self.last_backup_generation: int | None = None

    def missing(self) -> str | None:
        """Why the tool cannot run, or None."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["XDG_CACHE_HOME"] = str(self.cache / "xdg-cache")
        env["XDG_CONFIG_HOME"] = str(self.cache / "xdg-config")
        return env

    def init_cmd(self) -> list[str]:
        raise NotImplementedError

    def backup_cmd(self, data: Path, step: str) -> list[str]:
        raise NotImplementedError

    def backup_succeeded(self) -> None:
        """Called after a backup step exited 0."""

    def restore_cmd(self, target: Path) -> tuple[list[str], Path | None]:
        raise NotImplementedError

    def verify_cmd(self) -> list[str]:
        raise NotImplementedError


class Casbackup(Tool):
    name = "casbackup"

    def base(self) -> list[str]:
        if self.args.casbackup_cmd:
            return shlex.split(self.args.casbackup_cmd)
        # the checkout's own install (scripts/setup.sh) first: a version manager's shim
        # on PATH (pyenv) would add ~0.1 s of bash to every step
        venv = REPO_ROOT / ".venv" / "bin" / "casbackup"
        if venv.exists():
            return [str(venv)]
        exe = shutil.which("casbackup")
        return [exe] if exe else [sys.executable, "-m", "casbackup"]

    def missing(self) -> str | None:
        if self.args.casbackup_cmd or shutil.which("casbackup"):
            return None
        if (REPO_ROOT / "casbackup" / "__init__.py").exists():
            return None
        if importlib.util.find_spec("casbackup") is None:
            return "no `casbackup` on PATH and the casbackup package is not importable"
        return None

    def env(self) -> dict[str, str]:
        env = super().env()
        env["CASBACKUP_PASSWORD"] = PASSWORD
        # As installed: bytecode compiled once. With PYTHONDONTWRITEBYTECODE=1 (set on
        # these machines) a `--casbackup-cmd` checkout, which the compileall below does
        # not reach, would compile every module it imports on every command.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        return env

    def version(self) -> str:
        rc, out = quick([*self.base(), "--version"], self.env())
        if rc == 0 and out:
            return out.splitlines()[-1]
        m = re.search(
            r'__version__\s*=\s*"([^"]+)"',
            (REPO_ROOT / "casbackup" / "__init__.py").read_text()
            if (REPO_ROOT / "casbackup" / "__init__.py").exists()
            else "",
        )
        return f"casbackup {m.group(1)} (source tree)" if m else "unknown"

    def init_cmd(self) -> list[str]:
        return [*self.base(), "init", "--store", str(self.repo)]

    def backup_cmd(self, data: Path, step: str) -> list[str]:
        return [*self.base(), "backup", "--store", str(self.repo), str(data)]

    def restore_cmd(self, target: Path) -> tuple[list[str], Path | None]:
        return [*self.base(), "restore", "--store", str(self.repo), "latest", str(target)], None

    def verify_cmd(self) -> list[str]:
        return [*self.base(), "verify", "--store", str(self.repo), "--read-data"]


class Restic(Tool):
    name = "restic"

    def missing(self) -> str | None:
        return None if shutil.which("restic") else "`restic` not on PATH"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["RESTIC_PASSWORD"] = PASSWORD
        env["RESTIC_REPOSITORY"] = str(self.repo)
        env["RESTIC_CACHE_DIR"] = str(self.cache)
        return env

    def version(self) -> str:
        return quick(["restic", "version"])[1]

    def _version_tuple(self) -> tuple[int, ...]:
        m = re.search(r"restic (\d+)\.(\d+)", self.version())
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    def init_cmd(self) -> list[str]:
        # Format v2 (compression) is the default from 0.14 on; ask for it explicitly.
        if self._version_tuple() >= (0, 14):
            return ["restic", "init", "--repository-version", "2"]
        return ["restic", "init"]

    def backup_cmd(self, data: Path, step: str) -> list[str]:
        return ["restic", "backup", "--host", "cb-bench", str(data)]

    def restore_cmd(self, target: Path) -> tuple[list[str], Path | None]:
        return ["restic", "restore", "latest", "--target", str(target)], None

    def verify_cmd(self) -> list[str]:
        return ["restic", "check", "--read-data"]


class Borg(Tool):
    name = "borg"

    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        super().__init__(workdir, args)
        self._major: int | None = None
        self.pending_archive: str | None = None
        self.last_archive: str | None = None

    def backup_succeeded(self) -> None:
        self.last_archive = self.pending_archive

    def missing(self) -> str | None:
        return None if shutil.which("borg") else "`borg` not on PATH"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["BORG_PASSPHRASE"] = PASSWORD
        env["BORG_REPO"] = str(self.repo)
        env["BORG_BASE_DIR"] = str(self.cache)
        env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
        env["BORG_DISPLAY_PASSPHRASE"] = "no"
        return env

    def version(self) -> str:
        return quick(["borg", "--version"])[1]

    def major(self) -> int:
        if self._major is None:
            m = re.search(r"(\d+)\.(\d+)", self.version())
            self._major = int(m.group(1)) if m else 1
        return self._major

    def _repo_args(self) -> list[str]:
        return ["-r", str(self.repo)] if self.major() >= 2 else []

    def init_cmd(self) -> list[str]:
        if self.major() >= 2:
            # borg 2 betas renamed rcreate to repo-create; the AEAD modes replaced the 1.x ones.
            sub = "repo-create" if quick(["borg", "repo-create", "--help"])[0] == 0 else "rcreate"
            return ["borg", "-r", str(self.repo), sub, "--encryption", "repokey-blake2-aes-ocb"]
        return ["borg", "init", "--encryption", "repokey-blake2", str(self.repo)]

    def _archive(self, name: str) -> str:
        return name if self.major() >= 2 else f"{self.repo}::{name}"

    def backup_cmd(self, data: Path, step: str) -> list[str]:
        name = f"{step}-{dt.datetime.now().strftime('%Y%m%dT%H%M%S.%f')}"
        self.pending_archive = name
        return [
            "borg",
            *self._repo_args(),
            "create",
            "--compression",
            self.args.borg_compression,
            self._archive(name),
            str(data),
        ]

    def latest_archive(self) -> str | None:
        list_cmd = [
            "borg",
            *self._repo_args(),
            "list" if self.major() < 2 else "repo-list",
            "--short",
            "--last",
            "1",
        ]
        if self.major() < 2:
            list_cmd.append(str(self.repo))
        rc, out = quick(list_cmd, self.env())
        return out.splitlines()[-1].strip() if rc == 0 and out else None

    def restore_cmd(self, target: Path) -> tuple[list[str], Path | None]:
        name = self.last_archive or self.latest_archive() or "NO-ARCHIVE-FOUND"
        return ["borg", *self._repo_args(), "extract", self._archive(name)], target

    def verify_cmd(self) -> list[str]:
        cmd = ["borg", *self._repo_args(), "check", "--verify-data"]
        return cmd if self.major() >= 2 else [*cmd, str(self.repo)]


TOOL_CLASSES: dict[str, type[Tool]] = {"casbackup": Casbackup, "restic": Restic, "borg": Borg}


# ----------------------------------------------------------------------------- results


@dataclass
class StepResult:
    tool: str
    step: str
    status: str  # ok | failed | skipped
    wall_s: float | None = None
    cpu_s: float | None = None
    user_s: float | None = None
    sys_s: float | None = None
    maxrss_mib: float | None = None
    bytes: int | None = None  # logical bytes the MB/s figure is computed over
    mb_per_s: float | None = None
    store_bytes: int | None = None
    cache_bytes: int | None = None
    command: str | None = None
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


TARGETS = (
    # (id, step, metric, comparison, bound, description)
    (
        "backup-throughput",
        "backup",
        "mb_per_s",
        ">=",
        1.5,
        "first backup >= 1.5x restic throughput",
    ),
    (
        "unchanged-time",
        "backup-unchanged",
        "wall_s",
        "<=",
        0.5,
        "unchanged re-backup <= 0.5x restic time",
    ),
    (
        "mutated-time",
        "backup-mutated",
        "wall_s",
        "<=",
        0.67,
        "backup after mutation <= 0.67x restic time",
    ),
    ("restore-throughput", "restore", "mb_per_s", ">=", 1.3, "restore >= 1.3x restic throughput"),
    (
        "verify-time",
        "verify",
        "wall_s",
        "<=",
        0.67,
        "verify --read-data <= 0.67x restic check --read-data time",
    ),
)


def _get(results: list[StepResult], tool: str, step: str) -> StepResult | None:
    for r in results:
        if r.tool == tool and r.step == step and r.status == "ok":
            return r
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def compute_ratios(results: list[StepResult], base: str) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for step in STEPS:
        a, b = _get(results, "casbackup", step), _get(results, base, step)
        if a is None or b is None:
            continue
        out[step] = {
            "mb_per_s": _ratio(a.mb_per_s, b.mb_per_s),
            "wall_s": _ratio(a.wall_s, b.wall_s),
            "cpu_s": _ratio(a.cpu_s, b.cpu_s),
            "maxrss_mib": _ratio(a.maxrss_mib, b.maxrss_mib),
            "store_bytes": _ratio(a.store_bytes, b.store_bytes),
        }
    return out


def _final_store(results: list[StepResult], tool: str) -> tuple[str, int] | None:
    for step in reversed(BACKUP_STEPS):
        r = _get(results, tool, step)
        if r is not None and r.store_bytes is not None:
            return step, r.store_bytes
    return None


def check_targets(results: list[StepResult]) -> list[dict[str, object]]:
    checks: list[dict[str, object]] = []
    for tid, step, metric, op, bound, desc in TARGETS:
        a, b = _get(results, "casbackup", step), _get(results, "restic", step)
        ratio = _ratio(getattr(a, metric, None), getattr(b, metric, None)) if a and b else None
        if ratio is None:
            status = "n/a"
        else:
            status = "PASS" if (ratio >= bound if op == ">=" else ratio <= bound) else "FAIL"
        checks.append(
            {"id": tid, "target": desc, "ratio": ratio, "bound": f"{op} {bound}", "status": status}
        )
    # Peak RSS <= restic's in every step both ran.
    rss = {}
    for step in STEPS:
        a, b = _get(results, "casbackup", step), _get(results, "restic", step)
        if a and b and a.maxrss_mib is not None and b.maxrss_mib:
            rss[step] = a.maxrss_mib / b.maxrss_mib
    worst = max(rss.values()) if rss else None
    checks.append(
        {
            "id": "peak-rss",
            "target": "peak RSS <= restic's in every step",
            "ratio": worst,
            "bound": "<= 1.0 (worst step)",
            "per_step": rss,
            "status": "n/a" if worst is None else ("PASS" if worst <= 1.0 else "FAIL"),
        }
    )
    # Store size within 5% of restic's after the same (last common) backup step.
    cb, rs = _final_store(results, "casbackup"), _final_store(results, "restic")
    ratio = cb[1] / rs[1] if cb and rs and cb[0] == rs[0] and rs[1] else None
    checks.append(
        {
            "id": "store-size",
            "target": "store size within 5% of restic's",
            "ratio": ratio,
            "bound": "0.95 .. 1.05",
            "status": "n/a" if ratio is None else ("PASS" if 0.95 <= ratio <= 1.05 else "FAIL"),
        }
    )
    return checks


def _fmt(v: float | None, spec: str) -> str:
    if v is None:
        m = re.match(r"\d+", spec)
        return "-".rjust(int(m.group(0)) if m else 0)
    return format(v, spec)


def print_report(
    results: list[StepResult],
    ratios: dict[str, dict[str, dict[str, float | None]]],
    checks: list[dict[str, object]],
) -> None:
    print()
    hdr = (
        f"{'tool':<10} {'step':<17} {'MB/s':>8} {'wall s':>8} {'CPU s':>8} "
        f"{'RSS MiB':>8} {'store MiB':>10}  status"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        store = None if r.store_bytes is None else r.store_bytes / MIB
        note = r.status
        if r.extra.get("restore_matches_source") is False:
            note += " (RESTORED TREE DIFFERS FROM SOURCE)"
        elif r.extra.get("restore_matches_source") is True:
            note += " (restored tree matches)"
        if r.status != "ok" and r.error:
            note += f" ({r.error.splitlines()[0][:60]})"
        print(
            f"{r.tool:<10} {r.step:<17} {_fmt(r.mb_per_s, '8.1f')} {_fmt(r.wall_s, '8.2f')} "
            f"{_fmt(r.cpu_s, '8.2f')} {_fmt(r.maxrss_mib, '8.1f')} {_fmt(store, '10.1f')}  "
            f"{note}"
        )
    for base, table in ratios.items():
        if not table:
            continue
        print(f"\nratios casbackup/{base}:")
        print(f"  {'step':<17} {'MB/s':>7} {'wall':>7} {'CPU':>7} {'RSS':>7} {'store':>7}")
        for step, rr in table.items():
            print(
                f"  {step:<17} {_fmt(rr['mb_per_s'], '7.2f')} {_fmt(rr['wall_s'], '7.2f')} "
                f"{_fmt(rr['cpu_s'], '7.2f')} {_fmt(rr['maxrss_mib'], '7.2f')} "
                f"{_fmt(rr['store_bytes'], '7.2f')}"
            )
    print("\ntargets (casbackup vs restic):")
    for c in checks:
        ratio = c["ratio"]
        rtxt = "-" if ratio is None else f"{ratio:.2f}"
        print(f"  [{c['status']:<4}] {c['target']:<58} ratio {rtxt:>6}  want {c['bound']}")
    errors = [r for r in results if r.status == "failed"]
    for r in errors:
        print(f"\n{r.tool} {r.step} failed: {r.command}\n{r.error}")


# ----------------------------------------------------------------------------- main


def find_restored_root(target: Path, data: Path, top_names: set[str]) -> Path | None:
    """Where in ``target`` the tool put the backed-up ``data`` directory."""
    candidates = [target, target / str(data).lstrip("/"), target / data.name]
    for c in candidates:
        if c.is_dir() and set(os.listdir(c)) == top_names:
            return c
    for dirpath, dirnames, _files in os.walk(target):
        if set(dirnames) >= top_names and set(os.listdir(dirpath)) == top_names:
            return Path(dirpath)
        if len(Path(dirpath).relative_to(target).parts) > 12:
            dirnames.clear()
    return None


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def prepare_workdir(workdir: Path) -> None:
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise SystemExit(
            f"{workdir} is not empty and not a benchmark workdir (no {MARKER}); "
            "pick another --workdir"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).touch()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="corpus scale; 1.0 is ~1 GB (default), 0.1 for a quick run",
    )
    ap.add_argument("--seed", type=int, default=42, help="corpus seed (default 42)")
    ap.add_argument(
        "--corpus",
        choices=("synthetic", "real"),
        default="synthetic",
        help="synthetic: corpus.py (default); real: a sample of this machine's files "
        "(realtree.py) with a day of changes as the mutation",
    )
    ap.add_argument("--real-files", type=int, default=realtree.DEFAULT_FILES,
                    help="--corpus real: small files to sample (default 50000)")
    ap.add_argument("--real-bytes", type=int, default=realtree.DEFAULT_BYTES,
                    help="--corpus real: byte budget (default 1.5e9)")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=HERE / "work",
        help="corpus, repositories, caches, restores, logs (default benchmarks/work)",
    )
    ap.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        help=f"comma-separated subset of {','.join(ALL_TOOLS)}",
    )
    ap.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"comma-separated subset of {','.join(STEPS)} (run in that order)",
    )
    ap.add_argument(
        "--rebuild-corpus",
        action="store_true",
        help="rebuild even if a matching unmutated corpus exists",
    )
    ap.add_argument(
        "--no-drop-caches",
        action="store_true",
        help="do not drop the page cache before each step (warm cache)",
    )
    ap.add_argument(
        "--no-check-restore",
        action="store_true",
        help="skip comparing the restored tree to the source",
    )
    ap.add_argument("--timeout", type=float, default=7200, help="per step, seconds")
    ap.add_argument(
        "--borg-compression",
        default="zstd,3",
        help="borg --compression (default zstd,3; borg's own default is lz4)",
    )
    ap.add_argument(
        "--casbackup-cmd",
        default=None,
        help="command prefix for casbackup (default: `casbackup` on PATH, "
        "else `python -m casbackup`)",
    )
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    ap.add_argument("--no-results", action="store_true", help="do not write the JSON file")
    args = ap.parse_args(argv)

    tool_names = parse_list(args.tools, ALL_TOOLS, "tool")
    steps = parse_list(args.steps, STEPS, "step")
    workdir = args.workdir.resolve()
    prepare_workdir(workdir)
    started = dt.datetime.now(dt.UTC)

    # Corpus.
    root = workdir / "corpus"
    root.mkdir(exist_ok=True)
    manifest = corpus.read_manifest(root)
    real = args.corpus == "real"
    wanted = (
        {"format": realtree.FORMAT, "target_files": args.real_files,
         "target_bytes": args.real_bytes}
        if real
        else {"format": corpus.FORMAT_VERSION, "scale": args.scale}
    )
    reusable = (
        manifest is not None
        and not args.rebuild_corpus
        and all(manifest.get(k) == v for k, v in wanted.items())
        and manifest.get("seed") == args.seed
        and manifest.get("generation") == 0
        and (root / "data").is_dir()
    )
    if reusable:
        print(
            f"reusing corpus {root}/data: {manifest['files']} files, "
            f"{manifest['bytes'] / MB:.0f} MB"
        )
    elif real:
        print(f"sampling this machine's files (seed {args.seed}) into {root}/data ...", flush=True)
        manifest = realtree.build(root, args.real_files, args.real_bytes, args.seed)
        for label, src in manifest["sources"].items():
            print(f"  {label:<26} {src['files']:>7} files {src['bytes'] / MB:>8.1f} MB"
                  f"  from {src['path']}")
    else:
        print(
            f"building corpus (scale {args.scale}, seed {args.seed}) in {root}/data ...", flush=True
        )
        manifest = corpus.build(root, args.scale, args.seed)
    if not reusable:
        print(
            f"  {manifest['files']} files, {manifest['bytes'] / MB:.0f} MB "
            f"in {manifest['build_seconds']} s"
        )
    assert manifest is not None
    data = root / "data"
    corpus_info: dict[str, object] = {"initial": dict(manifest)}
    bytes_by_gen = {0: int(manifest["bytes"])}
    generation = int(manifest["generation"])
    fingerprints: dict[int, str] = {}

    # Tools.
    if "casbackup" in tool_names and not args.casbackup_cmd:
        # An installed package has its bytecode compiled; a checkout run with
        # PYTHONDONTWRITEBYTECODE=1 (as CI and these machines set it) would compile all of
        # casbackup again on every command (`casbackup snapshots`: 0.36-0.42 CPU-s without
        # .pyc files, 0.33-0.36 with them, three runs each on a loaded machine; importing
        # the CLI alone: 0.28 vs 0.16 CPU-s). Existing .pyc files are still read.
        compileall.compile_dir(str(REPO_ROOT / "casbackup"), quiet=1)
    tools: list[Tool] = []
    versions: dict[str, str] = {}
    skipped: dict[str, str] = {}
    run_baselines = baselines.NAME in tool_names
    if run_baselines and (reason := baselines.missing()):
        print(f"skipping baselines: {reason}")
        skipped[baselines.NAME] = reason
        run_baselines = False
    for name in tool_names:
        if name == baselines.NAME:
            continue
        tool = TOOL_CLASSES[name](workdir, args)
        reason = tool.missing()
        if reason:
            print(f"skipping {name}: {reason}")
            skipped[name] = reason
            continue
        versions[name] = tool.version()
        print(f"{name}: {versions[name]}")
        tools.append(tool)

    cold = not args.no_drop_caches and drop_caches()
    cache_mode = "cold (page cache dropped before each step)" if cold else "warm"
    if not args.no_drop_caches and not cold:
        print("cannot write /proc/sys/vm/drop_caches: measuring with a warm page cache")
    print(f"page cache: {cache_mode}")

    results: list[StepResult] = []
    logs = workdir / "logs"
    if logs.exists():
        rmtree(logs, workdir)
    for step in STEPS:
        if step not in steps:
            continue
        if step == "mutate":
            t0 = time.perf_counter()
            manifest = realtree.mutate(root) if real else corpus.mutate(root)
            generation = int(manifest["generation"])
            bytes_by_gen[generation] = int(manifest["bytes"])
            corpus_info["mutated"] = dict(manifest)
            print(
                f"\n== mutate: {manifest['last_mutation']} ({time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
            continue
        print(f"\n== {step}", flush=True)
        if run_baselines:
            results += run_baseline_step(step, data, workdir, logs, cold, args.timeout,
                                         bytes_by_gen[generation])
        for tool in tools:
            res = StepResult(tool=tool.name, step=step, status="skipped")
            results.append(res)
            if tool.broken:
                res.error = tool.broken
                print(f"  {tool.name:<10} skipped ({tool.broken})")
                continue
            target = workdir / "restore" / tool.name
            cwd: Path | None = None
            if step == "init":
                for d in (tool.repo, tool.cache):
                    rmtree(d, workdir)
                tool.repo.parent.mkdir(parents=True, exist_ok=True)
                tool.cache.mkdir(parents=True, exist_ok=True)
                cmd = tool.init_cmd()
            elif step in BACKUP_STEPS:
                cmd = tool.backup_cmd(data, step)
            elif step == "restore":
                rmtree(target, workdir)
                target.mkdir(parents=True)
                cmd, cwd = tool.restore_cmd(target)
            else:
                cmd = tool.verify_cmd()
            res.command = shlex.join(cmd)
            if cold:
                drop_caches()
            m = run_measured(cmd, tool.env(), cwd, logs / f"{tool.name}-{step}.log", args.timeout)
            res.status = "ok" if m.ok else "failed"
            res.error = m.error
            for k in ("wall_s", "cpu_s", "user_s", "sys_s", "maxrss_mib"):
                setattr(res, k, round(getattr(m, k), 4))
            if m.rc is None:
                res.wall_s = res.cpu_s = res.user_s = res.sys_s = res.maxrss_mib = None
            res.store_bytes = apparent_size(tool.repo) if tool.repo.exists() else None
            res.cache_bytes = apparent_size(tool.cache) if tool.cache.exists() else None
            if step in BACKUP_STEPS:
                res.bytes = bytes_by_gen[generation]
                if m.ok:
                    tool.last_backup_generation = generation
                    tool.backup_succeeded()
            elif step != "init":
                src_gen = (
                    tool.last_backup_generation
                    if tool.last_backup_generation is not None
                    else generation
                )
                res.bytes = bytes_by_gen.get(src_gen)
            if step == "restore":
                if m.ok and not args.no_check_restore:
                    found = find_restored_root(target, data, set(os.listdir(data)))
                    if found is None:
                        res.extra["restore_matches_source"] = False
                        res.extra["restore_check"] = "backed-up tree not found in target"
                    else:
                        if src_gen not in fingerprints and src_gen == generation:
                            fingerprints[src_gen] = corpus.fingerprint(data)
                        if src_gen in fingerprints:
                            same = corpus.fingerprint(found) == fingerprints[src_gen]
                            res.extra["restore_matches_source"] = same
                            res.extra["restore_root"] = str(found.relative_to(target))
                rmtree(target, workdir)
            if m.ok and res.bytes and res.wall_s:
                res.mb_per_s = round(res.bytes / MB / res.wall_s, 2)
            if not m.ok and step == "init":
                tool.broken = f"init failed: {(m.error or '').splitlines()[0]}"
            print(
                f"  {tool.name:<10} {res.status:<7} wall {_fmt(res.wall_s, '.2f')} s, "
                f"CPU {_fmt(res.cpu_s, '.2f')} s, RSS {_fmt(res.maxrss_mib, '.0f')} MiB"
                + (f", {res.mb_per_s} MB/s" if res.mb_per_s else "")
                + ("" if m.ok else f"\n{_indent(m.error or '')}"),
                flush=True,
            )

    ratios = {
        base: compute_ratios(results, base)
        for base in ("restic", "borg")
        if any(t.name == base for t in tools)
    }
    checks = check_targets(results)
    print_report(results, ratios, checks)
    base_ratios = baselines.ratios(results, [t.name for t in tools])
    baselines.print_ratios(base_ratios, [t.name for t in tools])

    report = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "params": {
            "corpus": args.corpus,
            "scale": args.scale,
            "seed": args.seed,
            "tools": tool_names,
            "steps": steps,
            "borg_compression": args.borg_compression,
            "timeout": args.timeout,
        },
        "page_cache": cache_mode,
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "mem_bytes": _mem_bytes(),
        },
        "versions": versions,
        "skipped_tools": skipped,
        "corpus": corpus_info,
        "results": [asdict(r) for r in results],
        "ratios": ratios,
        "baseline_ratios": base_ratios,
        "targets": checks,
    }
    if not args.no_results:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        out = args.results_dir / f"{started.strftime('%Y-%m-%d')}.json"
        if out.exists():
            out = args.results_dir / f"{started.strftime('%Y-%m-%d-%H%M%S')}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nresults written to {out}")
    return 0


def run_baseline_step(step: str, data: Path, workdir: Path, logs: Path, cold: bool,
                      timeout: float, nbytes: int) -> list[StepResult]:
    """Run and measure the baseline commands of STEP (see baselines.py)."""
    out = []
    (workdir / "repos").mkdir(exist_ok=True)
    target = workdir / "restore" / baselines.NAME
    for label, cmd in baselines.commands(step, data, workdir):
        if step == "restore":
            rmtree(target, workdir)
            target.mkdir(parents=True)
        if cold:
            drop_caches()
        log = logs / f"baseline-{re.sub(r'[^a-z0-9]+', '-', label)}-{step}.log"
        m = run_measured(cmd, dict(os.environ), None, log, timeout)
        res = StepResult(tool=label, step=step, status="ok" if m.ok else "failed",
                         command=shlex.join(cmd), error=m.error, bytes=nbytes)
        for k in ("wall_s", "cpu_s", "user_s", "sys_s", "maxrss_mib"):
            setattr(res, k, round(getattr(m, k), 4))
        if m.ok and res.wall_s:
            res.mb_per_s = round(nbytes / MB / res.wall_s, 2)
        archive = workdir / "repos" / "baseline.tar.zst"
        if step == "backup" and archive.exists():
            res.store_bytes = archive.stat().st_size
        if step == "restore":
            rmtree(target, workdir)
        print(
            f"  {label:<10} {res.status:<7} wall {_fmt(res.wall_s, '.2f')} s, "
            f"CPU {_fmt(res.cpu_s, '.2f')} s, RSS {_fmt(res.maxrss_mib, '.0f')} MiB",
            flush=True,
        )
        out.append(res)
    return out


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def _mem_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


if __name__ == "__main__":
    sys.exit(main())
