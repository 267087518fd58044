"""Remote stores: casbackup vs restic to the same S3 endpoint and the same SFTP server.

Starts, on loopback only, a moto S3 server (its own process, ``python -m moto.server``)
and an OpenSSH ``sshd`` (the ``Sshd`` helper of ``tests/conftest.py``: throwaway host and
client keys, ``internal-sftp``), builds (or reuses) the deterministic corpus of
``corpus.py``, then for every target (local directory, S3, SFTP) and tool (casbackup,
restic) times, one command each:

    backup   first backup of the corpus into a fresh repository
    restore  restore of that snapshot into an empty directory (checked, untimed,
             against the corpus fingerprint)

and prints MB/s (corpus bytes, 10^6, over wall seconds; the median of ``--repeat`` runs,
and the best), CPU seconds of the command and the casbackup/restic ratio of the medians
per target. On a shared 2-core machine single runs vary by 2x: compare medians.
Both tools use their defaults (encrypted repositories), warm page cache (``sync``
before every timed command, so no step pays for the previous one's writeback), their
local caches in the workdir. restic is pointed at
the same endpoints: ``-r s3:http://127.0.0.1:PORT/bucket/prefix`` with the
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` environment, and ``-r
sftp:user@127.0.0.1:/path`` with ``-o sftp.command="ssh -p PORT -i KEY ... -s sftp"``.

Usage::

    python benchmarks/remote_bench.py                       # ~200 MB corpus (scale 0.2)
    python benchmarks/remote_bench.py --scale 0.05 --targets s3 --tools casbackup
    python benchmarks/remote_bench.py --workdir /tmp/cb-remote --repeat 2

Writes the figures to ``benchmarks/results/remote-<date>.json`` (``--no-results``: don't).
Needs moto[server] and boto3 (``pip install -e '.[test]'``), ``sshd``/``ssh`` and
``restic`` on PATH; a missing restic is skipped with a message.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO_ROOT))
import corpus  # noqa: E402

PASSWORD = "casbackup-remote-bench"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key-0123456789"
BUCKET = "cb-bench"
MB = 1_000_000
TARGETS = ("local", "s3", "sftp")
TOOLS = ("casbackup", "restic")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """A moto S3 server in its own process on loopback, with one bucket; yields the
    endpoint URL."""
    import boto3  # type: ignore[import-untyped]

    port = free_port()
    log = open(workdir / "moto.log", "wb")  # noqa: SIM115 -- owned by the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start; see {workdir / 'moto.log'}")
            time.sleep(0.1)
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@contextlib.contextmanager
def sshd_server(workdir: Path) -> Iterator[Any]:
    from tests.conftest import Sshd

    shutil.rmtree(workdir / "sshd", ignore_errors=True)  # fresh keys every run
    server = Sshd(workdir / "sshd")
    try:
        yield server
    finally:
        server.stop()


class Run:
    def __init__(self, wall: float, cpu: float, rc: int, log: Path) -> None:
        self.wall, self.cpu, self.rc, self.log = wall, cpu, rc, log


def run(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> Run:
    os.sync()  # the previous step's dirty pages are not this step's cost
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        p = subprocess.run(
            cmd,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, p.returncode, log)


class Tool:
    name = ""

    def __init__(self, work: Path, target: str, servers: dict[str, Any]) -> None:
        self.work = work
        self.target = target
        self.servers = servers
        self.env = dict(os.environ)
        self.env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
            XDG_CACHE_HOME=str(work / "cache"),
        )

    def init(self) -> list[str]:
        raise NotImplementedError

    def backup(self, data: Path) -> list[str]:
        raise NotImplementedError

    def restore(self, target: Path) -> list[str]:
        raise NotImplementedError


class Casbackup(Tool):
    name = "casbackup"

    def __init__(self, work: Path, target: str, servers: dict[str, Any]) -> None:
        super().__init__(work, target, servers)
        self.env["CASBACKUP_PASSWORD"] = PASSWORD
        self.env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + self.env.get("PYTHONPATH", "")
        if target == "local":
            self.url = str(work / "repo")
        elif target == "s3":
            from urllib.parse import quote

            ep = quote(servers["s3"], safe="")
            self.url = f"s3://{BUCKET}/{work.name}-casbackup?endpoint={ep}&region=us-east-1"
        else:
            self.url = servers["sftp"].url(work / "repo")

    def base(self) -> list[str]:
        return [sys.executable, "-m", "casbackup"]

    def init(self) -> list[str]:
        return [*self.base(), "init", "--store", self.url]

    def backup(self, data: Path) -> list[str]:
        return [*self.base(), "backup", "--store", self.url, str(data)]

    def restore(self, target: Path) -> list[str]:
        return [*self.base(), "restore", "--store", self.url, "latest", str(target)]


class Restic(Tool):
    name = "restic"

    def __init__(self, work: Path, target: str, servers: dict[str, Any]) -> None:
        super().__init__(work, target, servers)
        self.env["RESTIC_PASSWORD"] = PASSWORD
        self.opts: list[str] = ["--cache-dir", str(work / "restic-cache")]
        if target == "local":
            self.repo = str(work / "repo")
        elif target == "s3":
            self.repo = f"s3:{servers['s3']}/{BUCKET}/{work.name}-restic"
        else:
            sshd = servers["sftp"]
            self.repo = f"sftp:{sshd.user}@127.0.0.1:{work / 'repo'}"
            ssh = (
                f"ssh -p {sshd.port} -i {sshd.client_key} -o UserKnownHostsFile={sshd.known_hosts}"
                f" -o StrictHostKeyChecking=yes -o BatchMode=yes {sshd.user}@127.0.0.1 -s sftp"
            )
            self.opts += ["-o", f"sftp.command={ssh}"]

    def base(self) -> list[str]:
        return ["restic", "-r", self.repo, *self.opts]

    def init(self) -> list[str]:
        return [*self.base(), "init"]

    def backup(self, data: Path) -> list[str]:
        return [*self.base(), "backup", "--host", "bench", str(data)]

    def restore(self, target: Path) -> list[str]:
        return [*self.base(), "restore", "latest", "--target", str(target)]


def restored(target: Path, data: Path) -> Path:
    return target / str(data.resolve()).lstrip("/")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.2, help="corpus scale (1.0 = ~1 GB)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cb-remote-bench"))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--repeat", type=int, default=5, help="runs per tool and target")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    tools = [t for t in args.tools.split(",") if t]
    if "restic" in tools and shutil.which("restic") is None:
        print("restic not on PATH: skipping it")
        tools.remove("restic")

    wd: Path = args.workdir.resolve()
    wd.mkdir(parents=True, exist_ok=True)
    croot = wd / "corpus"
    man = corpus.read_manifest(croot)
    if (
        not man
        or man.get("scale") != args.scale
        or man.get("seed") != args.seed
        or man.get("generation")
    ):
        print(f"building corpus (scale {args.scale}) in {croot} ...", flush=True)
        man = corpus.build(croot, args.scale, args.seed)
    data = croot / "data"
    nbytes = int(man["bytes"])
    fp = corpus.fingerprint(data)
    print(f"corpus: {man['files']} files, {nbytes / MB:.0f} MB", flush=True)

    # ext4 does not reuse an inode within 60 s of its deletion: it scans past it, and
    # with thousands just deleted every file creation slows down (`cp -r` of this corpus
    # went 0.29 -> 0.84 -> 1.74 s over three delete-and-copy rounds). So the previous
    # run's directories are removed first, then we wait; restores are kept until the end.
    old = [p for p in wd.iterdir() if p.is_dir() and p.name.split("-")[0] in TARGETS]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
    if old:
        print("removed the previous run; waiting 65 s for ext4 to reuse its inodes", flush=True)
        os.sync()
        time.sleep(65)

    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        servers: dict[str, Any] = {}
        if "s3" in targets:
            servers["s3"] = stack.enter_context(moto_server(wd))
        if "sftp" in targets:
            servers["sftp"] = stack.enter_context(sshd_server(wd))
        # repetitions outermost: a burst of load on this shared machine hits every
        # tool and target alike rather than one tool's runs
        for rep in range(args.repeat):
            for target in targets:
                for tool_name in tools:
                    work = wd / f"{target}-{tool_name}-{rep}"
                    (work / "logs").mkdir(parents=True)
                    tool: Tool = (Casbackup if tool_name == "casbackup" else Restic)(
                        work, target, servers
                    )
                    row: dict[str, Any] = {"target": target, "tool": tool_name, "rep": rep}
                    r = run(tool.init(), tool.env, work / "logs" / "init.log", args.timeout)
                    if r.rc != 0:
                        print(f"{tool_name} {target} init failed: see {r.log}")
                        continue
                    r = run(tool.backup(data), tool.env, work / "logs" / "backup.log", args.timeout)
                    row.update(backup_s=r.wall, backup_cpu_s=r.cpu, backup_ok=r.rc == 0)
                    tgt = work / "restore"
                    r = run(
                        tool.restore(tgt), tool.env, work / "logs" / "restore.log", args.timeout
                    )
                    row.update(restore_s=r.wall, restore_cpu_s=r.cpu, restore_ok=r.rc == 0)
                    row["restore_matches"] = (
                        r.rc == 0 and corpus.fingerprint(restored(tgt, data)) == fp
                    )
                    results.append(row)
                    print(
                        f"{target:6} {tool_name:10} backup {nbytes / MB / row['backup_s']:7.1f}"
                        f" MB/s ({row['backup_s']:.1f} s, cpu {row['backup_cpu_s']:.1f} s)"
                        f"  restore {nbytes / MB / row['restore_s']:7.1f} MB/s"
                        f" ({row['restore_s']:.1f} s, cpu {row['restore_cpu_s']:.1f} s)"
                        f"  {'ok' if row['restore_matches'] else 'RESTORE MISMATCH'}",
                        flush=True,
                    )

    def times(target: str, tool: str, key: str) -> list[float]:
        return sorted(
            r[key]
            for r in results
            if r["target"] == target and r["tool"] == tool and r["backup_ok"] and r["restore_ok"]
        )

    def mbs(t: float) -> float:
        return round(nbytes / MB / t, 1)

    print()
    print("MB/s, median of the runs (best in brackets)")
    print(f"{'target':8}{'tool':11}{'backup':>16}{'restore':>16}")
    summary: dict[str, Any] = {}
    for target in targets:
        for tool_name in tools:
            b, rs = times(target, tool_name, "backup_s"), times(target, tool_name, "restore_s")
            if not b or not rs:
                continue
            fig = {
                "backup_mb_s": mbs(b[len(b) // 2]),
                "backup_best_mb_s": mbs(b[0]),
                "restore_mb_s": mbs(rs[len(rs) // 2]),
                "restore_best_mb_s": mbs(rs[0]),
                "runs": len(b),
            }
            summary.setdefault(target, {})[tool_name] = fig
            print(
                f"{target:8}{tool_name:11}"
                f"{fig['backup_mb_s']:9.1f} ({fig['backup_best_mb_s']:5.1f})"
                f"{fig['restore_mb_s']:9.1f} ({fig['restore_best_mb_s']:5.1f})"
            )
    print()
    for target, by_tool in summary.items():
        if "casbackup" in by_tool and "restic" in by_tool:
            c, r = by_tool["casbackup"], by_tool["restic"]
            by_tool["ratio"] = {
                k: round(c[f"{k}_mb_s"] / r[f"{k}_mb_s"], 2) for k in ("backup", "restore")
            }
            print(
                f"{target}: casbackup/restic (medians)  backup {by_tool['ratio']['backup']:.2f}x"
                f"  restore {by_tool['ratio']['restore']:.2f}x"
            )

    if not args.no_results:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        out = args.results_dir / f"remote-{dt.date.today().isoformat()}.json"
        if out.exists():
            out = out.with_name(f"{out.stem}-{time.strftime('%H%M%S')}.json")
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        restic_v = (
            subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.strip()
            if "restic" in tools
            else None
        )
        out.write_text(
            json.dumps(
                {
                    "date": dt.datetime.now().isoformat(timespec="seconds"),
                    "commit": commit,
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                    "restic": restic_v,
                    "corpus": {
                        "scale": args.scale,
                        "seed": args.seed,
                        "files": man["files"],
                        "bytes": nbytes,
                    },
                    "page_cache": "warm",
                    "runs": results,
                    "summary": summary,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"results: {out}")
    ok = all(r["backup_ok"] and r["restore_ok"] and r["restore_matches"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
