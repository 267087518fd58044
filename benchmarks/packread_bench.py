"""How the one pack reader should coalesce ranges (store/packread.py: GAP and CAP).

Builds a local encrypted store of mixed blobs (small files' blobs and chunk-sized ones,
as a backup makes them), then, for each (gap, cap) and each share of blobs wanted (all of
them: a restore or verify; a random 70 %: gc's repack; a random 10 %: an incremental sync
or a partial restore), streams the wanted blobs of every pack through
``Store.stream_blobs`` in a fresh process and reports: ranged requests, bytes read, CPU
seconds, peak RSS, and the time a remote store would add at LATENCY seconds per request
(requests x latency: what a coalescing choice trades against the bytes it reads).

    python benchmarks/packread_bench.py [--mib 200] [--latency 0.02] [--workdir /tmp/prb]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PASSWORD = "bench"
GAPS = [0, 64 << 10, 256 << 10, 1 << 20]
CAPS = [1 << 20, 4 << 20, 16 << 20, 32 << 20]
SHARES = [1.0, 0.7, 0.1]


def build(path: Path, mib: int) -> None:
    from casbackup.ids import DATA
    from casbackup.store import init_store

    st = init_store(str(path), PASSWORD, kdf_n=2**10)
    rnd = random.Random(7)
    total = 0
    while total < mib << 20:
        n = rnd.randrange(1, 64 << 10) if rnd.random() < 0.6 else rnd.randrange(256 << 10, 2 << 20)
        st.add_blob(DATA, rnd.randbytes(n))
        total += n
    st.flush()
    st.close()


def measure(path: str, gap: int, cap: int, share: float) -> dict[str, float]:
    from casbackup.store import open_store
    from casbackup.store.packread import PackStream

    st = open_store(path, lambda: PASSWORD)
    index = st.load_index()
    rnd = random.Random(11)
    requests = 0
    read = 0
    real = st.read_pack_range_view

    def counting(pack: str, off: int, n: int, scratch):  # type: ignore[no-untyped-def]
        nonlocal requests, read
        requests += 1
        read += n
        return real(pack, off, n, scratch)

    st.read_pack_range_view = counting  # type: ignore[method-assign]
    wanted_bytes = 0
    t0 = time.process_time()
    for name, info in sorted(index.packs.items()):
        wanted = [e for e in info.entries if rnd.random() < share]
        wanted_bytes += sum(e.length for e in wanted)
        for b in PackStream(st, name, wanted, gap=gap, cap=cap):
            b.checked()
    cpu = time.process_time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"requests": requests, "read_mib": read / 2**20, "wanted_mib": wanted_bytes / 2**20,
            "cpu_s": cpu, "rss_mib": rss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.02, help="seconds per remote request")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/packread-bench"))
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # PATH GAP CAP SHARE
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.one[0], int(a.one[1]), int(a.one[2]), float(a.one[3]))))
        return
    store = a.workdir / "store"
    if store.exists():
        shutil.rmtree(store)
    a.workdir.mkdir(parents=True, exist_ok=True)
    build(store, a.mib)
    print(f"store: {a.mib} MiB of blobs; latency model {a.latency * 1000:.0f} ms/request")
    print(f"{'share':>5} {'gap KiB':>8} {'cap MiB':>8} {'reqs':>6} {'read MiB':>9} "
          f"{'CPU s':>6} {'RSS MiB':>8} {'+remote s':>9}")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    for share in SHARES:
        for gap in GAPS:
            for cap in CAPS:
                out = subprocess.run([sys.executable, __file__, "--one", str(store), str(gap),
                                      str(cap), str(share)], check=True, env=env,
                                     capture_output=True, text=True).stdout
                r = json.loads(out)
                print(f"{share:5.1f} {gap >> 10:8d} {cap >> 20:8d} {r['requests']:6.0f} "
                      f"{r['read_mib']:9.1f} {r['cpu_s']:6.2f} {r['rss_mib']:8.1f} "
                      f"{r['requests'] * a.latency:9.2f}", flush=True)
    shutil.rmtree(a.workdir)


if __name__ == "__main__":
    main()
