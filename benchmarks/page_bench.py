"""How long the status page takes to render for a long history (the target: under
200 ms for 10,000 snapshots, with a week of job runs in the timeline).

    python benchmarks/page_bench.py [--snapshots 10000] [--stores 1] [--runs 5]

Prints the render time of each run (the page is rendered from in-memory reports: what
the daemon does once its snapshot caches are warm) and the page's size.
"""

from __future__ import annotations

import argparse
import statistics
import time

from casbackup.daemon.page import JobRow, PageData, render_timed
from casbackup.daemon.state import RunRecord
from casbackup.ops.report import SnapshotPoint, StoreReport
from casbackup.ops.status import StoreStatus


def data(snapshots: int, stores: int) -> PageData:
    now = time.time()
    reports = []
    for s in range(stores):
        pts = [SnapshotPoint(f"{s:08x}{i:056x}", now - (snapshots - i) * 3600, f"host{i % 40}",
                             "incremental", ("auto",), 10**11 + i * 10**6, (i * 7919) % 10**8,
                             (i * 7919) % 10**8 // 2, 30 + i % 600, 250_000)
               for i in range(snapshots)]
        reports.append(StoreReport(f"store{s}", StoreStatus(f"/srv/s{s}", True,
                                   size_bytes=5 * 10**12, snapshots=snapshots,
                                   logical_bytes=snapshots * 10**11), pts))  # fmt: skip
    jobs = [JobRow(f"job{j}", "backup", "store0", "0 * * * *", "success", now - 600, 120.0,
                   None, now + 3000, 168, 3) for j in range(20)]
    history = [RunRecord(f"job{j}", now - k * 3600, 120.0, "failure" if k % 37 == 0 else
                         "success") for j in range(20) for k in range(100)]
    return PageData("casbackup", now, reports, jobs, history)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--snapshots", type=int, default=10_000)
    ap.add_argument("--stores", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    d = data(a.snapshots, a.stores)
    times = []
    for _ in range(a.runs):
        page, took = render_timed(d)
        times.append(took * 1000)
    print(f"{a.snapshots} snapshots x {a.stores} store(s), 20 jobs, 2000 runs: render "
          f"{', '.join(f'{t:.1f}' for t in times)} ms (median {statistics.median(times):.1f}),"
          f" page {len(page) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
