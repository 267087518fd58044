"""Per-command cost against the size of the store's index (issue #12): small backup,
small restore and ``snapshots`` on a real encrypted store whose index names N blobs.

The store is made with the CLI (``init``), then given N synthetic index entries written
as real sealed index objects of 200,000 entries each (as gc's consolidation writes them),
naming packs that are not there -- a small backup or restore never reads them, but every
command that loads the index pays for them. Then, for each checkout given (e.g. main and
this branch, run with the same Python), with a fresh cache directory:

- ``first backup``: a 200-file backup with an empty local cache (the branch builds its
  compact index files here; main loads the index as always),
- ``small backup`` (200 new files each run), ``small restore`` (of that snapshot) and
  ``snapshots``, each RUNS times with the cache warm.

Each step runs under ``/usr/bin/time -v``: wall seconds, CPU seconds (user+sys) and peak
RSS. Medians over the runs are printed as a Markdown table.

    python benchmarks/index_bench.py --blobs 1000000,3000000 \\
        --checkout main=/work/main --checkout branch=. --workdir /tmp/ib
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PASSWORD = "index-bench"
PER_OBJECT = 200_000


def make_store(store: Path, n: int, checkout: Path, packs_present: bool = False) -> None:
    """``init`` a store at STORE and add N synthetic index entries (this checkout's own
    library writes them: the index format is the same on both sides). With
    ``packs_present`` every pack they name is there too, as a sparse file of the size the
    index records (no disk blocks): presence and size are what verify checks without
    ``--read-data``, so that verify is clean (a pack's bytes would fail ``--read-data``)."""
    if store.exists():
        shutil.rmtree(store)
    env = _env(checkout, store.parent / "cache-build")
    subprocess.run([*_cb(checkout), "init", "--store", str(store)],
                   env=env, check=True, capture_output=True)
    code = f"""
import os, sys
sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]
sys.path.insert(0, {str(checkout)!r})
from casbackup.ids import INDEX, object_name
from casbackup.store import CacheSettings, open_store
from casbackup.store.index import PackInfo, encode_index
from casbackup.store.layout import index_key, pack_key
from casbackup.store.pack import PackEntry
st = open_store({str(store)!r}, lambda: {PASSWORD!r}, cache=CacheSettings.disabled())
rng = os.urandom
left, per_pack = {n}, 1000
while left:
    k = min(left, {PER_OBJECT})
    packs = []
    for p in range(0, k, per_pack):
        m = min(per_pack, k - p)
        packs.append(PackInfo(rng(32).hex(), "data", m * 1310720,
                              [PackEntry("data", rng(32), i * 1310720, 1310720, 1310720)
                               for i in range(m)]))
    data = st.codec.seal(INDEX, encode_index(packs))  # written as a writer's flush does,
    st.put_named(index_key(object_name(data)), data)  # without keeping them in memory
    for pk in packs if {packs_present!r} else ():
        path = os.path.join({str(store)!r}, *pack_key(pk.name).split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(pk.size)
    left -= k
st.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True)


# runs ``python -m casbackup`` from CHECKOUT even when this venv has another checkout
# installed in editable mode (its import finder would otherwise win over sys.path)
_RUNNER = (
    "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path "
    "if 'editable' not in type(f).__module__]; sys.path.insert(0, sys.argv.pop(1)); "
    "sys.argv[0] = 'casbackup'; runpy.run_module('casbackup', run_name='__main__')"
)


def _cb(checkout: Path) -> list[str]:
    return [sys.executable, "-c", _RUNNER, str(checkout)]


def _env(checkout: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(checkout)
    env["CASBACKUP_PASSWORD"] = PASSWORD
    env["CASBACKUP_CACHE_DIR"] = str(cache)
    env.pop("CASBACKUP_STORE", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measured as installed: bytecode compiled
    return env


def small_tree(path: Path, seed: int) -> Path:
    """200 files of 4-64 KiB of fresh random bytes (new data for every backup)."""
    if path.exists():
        shutil.rmtree(path)
    for i in range(200):
        d = path / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{seed}-{i}").write_bytes(os.urandom(4096 * (1 + (i * 7 + seed) % 16)))
    return path


def timed(cmd: list[str], env: dict[str, str],
          ok: tuple[int, ...] = (0,)) -> tuple[float, float, float, str]:
    """(wall s, cpu s, peak RSS MiB, stdout) of one run under /usr/bin/time -v; an exit
    code outside OK fails the run."""
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")

    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([0-9.:]+)", r.stderr)
        assert m, name
        return float(m.group(1))

    cpu = field("User time (seconds)") + field("System time (seconds)")
    return wall, cpu, field("Maximum resident set size (kbytes)") / 1024, r.stdout


def bench(store: Path, checkout: Path, label: str, runs: int, work: Path,
          maintenance: bool = False, packs_present: bool = False) -> dict[str, list]:
    cache = work / f"cache-{label}"
    if cache.exists():
        shutil.rmtree(cache)
    env = _env(checkout, cache)
    cb = _cb(checkout)
    out: dict[str, list] = {}

    def backup(seed: int) -> tuple[float, float, float, str]:
        src = small_tree(work / "src", seed)
        return timed([*cb, "backup", "--store", str(store), str(src)], env)

    out["first backup"] = [backup(0)[:3]]
    for step in ("small backup", "small restore", "snapshots"):
        out[step] = []
    for i in range(runs):
        out["small backup"].append(backup(i + 1)[:3])
        target = work / "restore"
        if target.exists():
            shutil.rmtree(target)
        out["small restore"].append(
            timed([*cb, "restore", "--store", str(store), "latest", str(target)], env)[:3])
        out["snapshots"].append(timed([*cb, "snapshots", "--store", str(store)], env)[:3])
        out.setdefault("ls latest", []).append(
            timed([*cb, "ls", "--store", str(store), "latest"], env)[:3])
    if maintenance:
        # without --packs-present the synthetic entries name packs that are not there:
        # verify names them all (exit 13) after walking the whole index, which is what is
        # measured; with them verify must be clean. gc only plans (--dry-run), or it
        # would drop every synthetic entry as unreferenced
        for _ in range(runs):
            out.setdefault("verify", []).append(
                timed([*cb, "verify", "--store", str(store)], env,
                      ok=(0,) if packs_present else (0, 13))[:3])
            out.setdefault("gc --dry-run", []).append(
                timed([*cb, "gc", "--dry-run", "--store", str(store)], env)[:3])
    return out


def _rss_kib() -> int:
    """This process's resident set now (VmRSS: anonymous and mapped file pages), KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def lookups(n: int, work: Path) -> None:
    """Lookups straight on a compact index file of N entries (this checkout): the time per
    lookup, and the peak RSS before and after looking up every entry once (the
    lookups read the file with pread and map nothing, so RSS must not grow with N)."""
    import random

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from casbackup.store import indexcache
    from casbackup.store.indexcache import Fetched
    from casbackup.store.pack import PackEntry

    d = work / "lookup-cache"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    ids = [os.urandom(32) for _ in range(n)]
    per = 1000

    def fetch(name: str) -> Fetched:
        k = int(name, 16) - 1
        chunk = ids[k * PER_OBJECT:(k + 1) * PER_OBJECT]
        return Fetched([(f"{k:08x}{p:056x}", "data", per * 100,
                         [PackEntry("data", b, i * 100, 100, 100)
                          for i, b in enumerate(chunk[p:p + per])])
                        for p in range(0, len(chunk), per)])

    names = [f"{k + 1:064x}" for k in range((n + PER_OBJECT - 1) // PER_OBJECT)]
    t0 = time.process_time()
    files, _ = indexcache.cover(d, names, fetch)
    build = time.process_time() - t0
    del files
    from casbackup.store.index import StoreIndex

    idx = StoreIndex()
    idx.set_bases(*indexcache.cover(d, names, fetch))
    random.shuffle(ids)
    kib0 = _rss_kib()
    t0 = time.process_time()
    assert all(b in idx for b in ids)
    hit = (time.process_time() - t0) / n * 1e6
    t0 = time.process_time()
    miss = sum(os.urandom(32) in idx for _ in range(n // 10))
    miss_us = (time.process_time() - t0) / (n // 10) * 1e6
    kib1 = _rss_kib()
    assert miss == 0
    t0 = time.process_time()  # the same lookups building their answer (restore's)
    assert all(idx.get(b) is not None for b in ids)
    find_us = (time.process_time() - t0) / n * 1e6
    size = sum(p.stat().st_size for p in d.iterdir())
    print(f"{n:,} entries: file {size / 2**20:.0f} MiB ({size / n:.0f} B/entry), built in "
          f"{build:.1f} CPU s; membership {hit:.1f} us (present), {miss_us:.1f} us (absent), "
          f"get {find_us:.1f} us (present); "
          f"RSS {kib0 / 1024:.0f} MiB before the lookups, {kib1 / 1024:.0f} MiB after "
          f"({(kib1 - kib0) * 1024 / n:.1f} B per entry looked up)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blobs", default="0,1000000", help="comma-separated index sizes")
    ap.add_argument("--checkout", action="append", default=[],
                    help="LABEL=PATH of a casbackup checkout (repeatable)")
    ap.add_argument("--workdir", default="/tmp/index-bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--maintenance", action="store_true",
                    help="also time verify (index only) and gc --dry-run, RUNS times")
    ap.add_argument("--packs-present", action="store_true",
                    help="write every synthetic pack as a sparse file of its indexed size, "
                    "so verify (without --read-data) is clean")
    ap.add_argument("--lookups", type=int, default=0,
                    help="only time N lookups on a compact index file of N entries")
    a = ap.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if a.lookups:
        lookups(a.lookups, work)
        return
    checkouts = [(c.split("=", 1)[0], Path(c.split("=", 1)[1]).resolve())
                 for c in a.checkout] or [("this", Path(__file__).resolve().parents[1])]
    for _label, path in checkouts:  # as pip would have: no command compiles its modules
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(path / "casbackup")],
                       check=True, capture_output=True)
    rows = []
    for n in (int(x) for x in a.blobs.split(",")):
        store = work / "store"
        t0 = time.monotonic()
        make_store(store, n, checkouts[-1][1], a.packs_present)
        size = sum(f.stat().st_blocks * 512 for f in store.rglob("*") if f.is_file())
        print(f"{n:>10,} store made in {time.monotonic() - t0:.0f} s wall, "
              f"{size / 2**20:.0f} MiB on disk", flush=True)
        # the same store for every checkout; their snapshots pile up, which is noise
        for label, path in checkouts:
            res = bench(store, path, label, a.runs, work, a.maintenance, a.packs_present)
            for step, vals in res.items():
                wall = statistics.median(v[0] for v in vals)
                cpu = statistics.median(v[1] for v in vals)
                rss = max(v[2] for v in vals)
                rows.append((n, label, step, wall, cpu, rss))
                print(f"{n:>10,} {label:>8} {step:>14}: {wall:6.2f} s wall, {cpu:6.2f} s "
                      f"CPU, {rss:7.1f} MiB peak", flush=True)
    print("\n| blobs in the index | checkout | step | wall s | CPU s | peak RSS MiB |")
    print("|---:|---|---|---:|---:|---:|")
    for n, label, step, wall, cpu, rss in rows:
        print(f"| {n:,} | {label} | {step} | {wall:.2f} | {cpu:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
