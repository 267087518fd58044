"""The in-place restore's survey alone, timed in process (issue #14 item 1).

On the corpus and store ``restore_inplace_bench.py`` left in WORKDIR (mutate it first:
``corpus.mutate``), run ``restore_existing.survey`` (``--overwrite if-changed``) three
times per worker count and print its wall seconds, process CPU-seconds (every thread)
and the walking thread's CPU-seconds. Workers 0 calls ``survey`` without the argument
(a tree from before it had one, via ``PYTHONPATH``). Read only.

    CASBACKUP_CACHE_DIR=W/cache PYTHONPATH=TREE python benchmarks/restore_survey_ab.py W 1,2
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import casbackup.ops.restore_existing as rex
from casbackup.ops.restore import plan_of
from casbackup.ops.snapsel import ANY, resolve
from casbackup.store import open_store


def main() -> None:
    work, counts = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
    st = open_store(work + "/store", lambda: "bench-password")
    data = work + "/corpus/data"
    items = list(plan_of(st, resolve(st, "latest", ANY), data, 0, [], []).entries())

    def lengths(ids: list[bytes]) -> list[int]:
        return [st.locate(b).entry.raw_length for b in ids]

    for r in range(3):
        for w in counts:
            kw: dict[str, Any] = {} if w == 0 else {"workers": w}
            root = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
            t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
            rex.survey(root, items, rex.IF_CHANGED, lengths, st.codec.blob_id,
                       hasher=st.codec.blob_hasher, chunker=lambda: st.chunker, **kw)
            t1, c1, m1 = time.perf_counter(), time.process_time(), time.thread_time()
            os.close(root)
            print(f"round {r + 1} workers {w} wall {t1 - t0:.3f} cpu {c1 - c0:.3f} "
                  f"walking-thread {m1 - m0:.3f}", flush=True)


if __name__ == "__main__":
    main()
