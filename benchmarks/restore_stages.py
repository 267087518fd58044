"""Where an in-place restore's CPU goes, by stage, in process (issue #14 item 1).

On the corpus and store ``restore_inplace_bench.py`` left in WORKDIR: apply the next
``corpus.mutate`` change set, then restore the snapshot over the corpus
(``--overwrite if-changed --delete``, as the bench) with ``time.process_time()`` (all
threads) and wall time around the imports, the store's open (scrypt and the index), the
checking pass (``restore.check``), the survey, the blob plans and the writer's steps;
what is left of ``restore()`` is the walk that lists the entries. Prints one line per
stage. The code measured is whatever ``casbackup`` imports (``PYTHONPATH``).

    CASBACKUP_CACHE_DIR=W/cache PYTHONPATH=TREE python benchmarks/restore_stages.py W
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

Stages = dict[str, list[float]]


def _timed(stages: Stages, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def g(*a: Any, **k: Any) -> Any:
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            s = stages.setdefault(name, [0.0, 0.0])
            s[0] += time.process_time() - c0
            s[1] += time.perf_counter() - w0
    return g


def main() -> None:
    work = sys.argv[1]
    corpus.mutate(Path(work) / "corpus")
    c0, w0 = time.process_time(), time.perf_counter()
    import casbackup.ops.restore as rst
    import casbackup.ops.restore_write as rw
    from casbackup.store import open_store
    print(f"imports: cpu {time.process_time() - c0:.3f} wall {time.perf_counter() - w0:.3f}")
    c0, w0 = time.process_time(), time.perf_counter()
    st = open_store(work + "/store", lambda: "bench-password")
    st.load_index()
    print(f"store open: cpu {time.process_time() - c0:.3f} wall {time.perf_counter() - w0:.3f}")
    stages: Stages = {}
    for name in ("check", "_survey", "fill_plan"):
        setattr(rst, name, _timed(stages, name, getattr(rst, name)))
    for name in ("create_and_fill", "delete_extra", "dir_metadata"):
        setattr(rw.Restorer, name, _timed(stages, name, getattr(rw.Restorer, name)))
    data = work + "/corpus/data"
    c0, w0 = time.process_time(), time.perf_counter()
    res = rst.restore(st, f"latest:{data}", data, overwrite="if-changed", delete=True)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    st.close()
    for name, (c, w) in stages.items():
        print(f"  {name}: cpu {c:.3f} wall {w:.3f}")
    rest_c = cpu - sum(c for c, _ in stages.values())
    rest_w = wall - sum(w for _, w in stages.values())
    print(f"  the rest (listing walk, counting): cpu {rest_c:.3f} wall {rest_w:.3f}")
    print(f"restore(): cpu {cpu:.3f} wall {wall:.3f}; {res.files} files written, "
          f"{res.bytes_read} B read, {res.bytes_written} B written")


if __name__ == "__main__":
    main()
