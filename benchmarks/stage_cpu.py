"""Where the CPU-seconds of a backup go: per-stage thread CPU of an in-process backup.

Runs ``backup`` of SRC into a fresh store twice (the first backup, then an unchanged
re-backup), with the pipeline's stage functions wrapped to add their *exclusive* thread
CPU (``time.thread_time``; a nested stage's time is its own, not its caller's) to a
per-stage counter, whichever thread runs them. Prints a table per backup: stage,
CPU-seconds, share of the process CPU; "other" is what no wrapped stage accounts for
(thread hand-offs, the interpreter, the wrappers themselves: about 1 us per call).
``--plain`` disables nothing and wraps nothing: the same backups, for the overhead.
Save worker processes (ops/save_pool.py) are not wrapped: their CPU (user+sys of the
reaped children) is shown beside the process CPU; ``--save-procs N`` sets their number
(0: threads only).
The store gets a cache directory under WORKDIR, so the unchanged re-backup uses the
directory cache (ops/dircache.py) the first one wrote; the re-backup opens the store
afresh, as a new command would (its index from the compact files of the cache
directory, not the dictionaries the first backup filled); ``--no-dircache``: no cache
directory, every directory compared with its parent tree (the code before the cache).

Usage::

    python benchmarks/stage_cpu.py SRC [--workdir /tmp/cb-stages] [--json OUT] [--no-dircache]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import shutil
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if importlib.util.find_spec("casbackup") is None:  # run from a checkout without install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_tls = threading.local()
_totals: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_lock = threading.Lock()


def _charge(stage: str, spent: float) -> None:
    with _lock:
        _totals[stage] += spent
        _calls[stage] += 1


def _frame_enter() -> tuple[float, list[float]]:
    stack: list[list[float]] | None = getattr(_tls, "stack", None)
    if stack is None:
        stack = _tls.stack = []
    child = [0.0]
    stack.append(child)
    return time.thread_time(), child


def _frame_exit(stage: str, t0: float, child: list[float]) -> None:
    spent = time.thread_time() - t0
    stack: list[list[float]] = _tls.stack
    stack.pop()
    if stack:
        stack[-1][0] += spent
    _charge(stage, spent - child[0])


def wrap(owner: Any, attr: str, stage: str) -> None:
    """Replace OWNER.ATTR by a wrapper charging its exclusive CPU to STAGE (nothing when
    OWNER has no ATTR: an older checkout measured by this script)."""
    orig = getattr(owner, attr, None)
    if orig is None:
        return

    def wrapper(*a: Any, **kw: Any) -> Any:
        t0, child = _frame_enter()
        try:
            return orig(*a, **kw)
        finally:
            _frame_exit(stage, t0, child)

    setattr(owner, attr, wrapper)


def wrap_gen(owner: Any, attr: str, stage: str) -> None:
    """Like ``wrap`` for a generator function: each step is charged to STAGE."""
    orig = getattr(owner, attr)

    def wrapper(*a: Any, **kw: Any) -> Iterator[Any]:
        it = orig(*a, **kw)
        while True:
            t0, child = _frame_enter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                _frame_exit(stage, t0, child)
            yield item

    setattr(owner, attr, wrapper)


def instrument() -> None:
    from casbackup.chunking.fastcdc import FastCDCChunker
    from casbackup.crypto.aead import Aead
    from casbackup.crypto.codec import Codec
    from casbackup.crypto.compress import Compressor
    from casbackup.ops import archiver, dircache, file_saver, tree_ahead
    from casbackup.ops import backup as backup_mod
    from casbackup.store import packer, store
    from casbackup.store.index import StoreIndex

    wrap(archiver.Archiver, "_walk", "walk: listdir, lstat, compare (walker)")
    wrap(archiver.Archiver, "_keep_files", "dircache: count a cached directory's files (walker)")
    wrap(archiver, "_lstat_all", "walk: listdir + lstat syscalls (walker)")
    wrap(archiver, "node_from_stat", "metadata: node_from_stat, xattrs (walker)")
    wrap(archiver.Archiver, "_file", "hand-off: open + batch (walker)")
    wrap(archiver.Archiver, "_finalize", "trees: build maps (walker)")
    wrap(archiver, "digest_and_racy", "dircache: listing digest (walker)")
    wrap(backup_mod, "open_cache", "dircache: read + check the file")
    wrap(dircache.DirCache, "write", "dircache: write the file")
    wrap(archiver, "encode_maps", "trees: encode (walker)")
    wrap(store.Store, "load_tree_maps", "trees: read parent (walker, not fetched ahead)")
    wrap(store, "decode_maps", "trees: decode + validate parent (walker)")
    wrap(tree_ahead, "decode_maps", "trees: decode + validate parent (walker)")
    wrap(tree_ahead.TreeAhead, "want", "trees: start fetching ahead (walker)")
    wrap(StoreIndex, "__contains__", "index: membership, one id (dedup, parent reuse)")
    wrap(StoreIndex, "contains_many", "index: membership, many ids (parent trees, dircache)")
    wrap(tree_ahead.TreeAhead, "_fetch", "trees: read parent (tree-ahead threads)")
    wrap(file_saver.FileSaver, "_save_batch", "saver: read, fstat, bookkeeping")
    wrap(file_saver.FileSaver, "_to_procs", "saver: send a batch's fds to a worker (walker)")
    wrap(file_saver.FileSaver, "_proc_batch", "saver: a worker's reply: close fds, count")
    wrap(store.Store, "add_sealed", "store: reserve the workers' sealed blobs")
    wrap_gen(FastCDCChunker, "cut_reader", "cut (FastCDC) + read of big files")
    wrap(Codec, "blob_id", "hash (keyed BLAKE3)")
    wrap(Compressor, "compress_parts", "compress (zstd + probe)")
    wrap(Aead, "seal", "encrypt (AES-GCM)")
    wrap(Aead, "seal_into", "encrypt (AES-GCM)")
    wrap(store.Store, "add_blob", "store: reserve + seal glue")
    wrap(store.Store, "add_blobs", "store: reserve + seal glue")
    wrap(packer.Packer, "add_many", "pack: append to open pack")
    wrap(packer.Packer, "_upload", "pack: publish, fsync, index")


def run(src: str, workdir: Path, stages: bool, dcache: bool = True,
        workers: int | None = None, save_procs: int | None = None) -> list[dict[str, Any]]:
    from casbackup.ops.archiver import ArchiveOptions
    from casbackup.ops.backup import BackupOptions, backup
    from casbackup.store import init_store, open_store
    from casbackup.store.cachedir import CacheSettings, store_cache_dir

    if stages:
        instrument()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    store = init_store(str(workdir / "store"), "stage-cpu", kdf_n=1 << 10)
    store.load_index()
    settings = CacheSettings(workdir / "cache") if dcache else CacheSettings.disabled()
    store.cache_dir = store_cache_dir(settings, store.config.store_id)  # (as open_store's)
    out = []
    for label in ("first backup", "unchanged re-backup"):
        if label != "first backup":  # a new command's store: the index from compact files
            store.close()
            store = open_store(str(workdir / "store"), lambda: "stage-cpu", cache=settings)
            store.load_index()
        _totals.clear()
        _calls.clear()
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0, w0 = time.process_time(), time.perf_counter()
        aopt = ArchiveOptions(prefetch=False)
        if workers is not None:
            aopt.workers = workers
        if save_procs is not None:
            aopt.save_procs = save_procs
        res = backup(store, [src], BackupOptions(archive=aopt))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the save workers, reaped
        child = (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime)
        s = res.summary
        out.append({"step": label, "cpu_s": cpu, "child_cpu_s": child, "wall_s": wall,
                    "files": s.files_new + s.files_changed + s.files_unchanged,
                    "dirs": s.dirs, "bytes": s.total_size,
                    "stages": dict(sorted(_totals.items(), key=lambda kv: -kv[1])),
                    "calls": dict(_calls)})
    return out


def show(results: list[dict[str, Any]]) -> None:
    for r in results:
        print(f"\n{r['step']}: {r['files']} files, {r['dirs']} dirs, "
              f"{r['bytes'] / 1e6:.0f} MB; {r['cpu_s']:.2f} CPU-s (+{r['child_cpu_s']:.2f} in "
              f"save workers), {r['wall_s']:.2f} s wall")
        accounted = 0.0
        for stage, t in r["stages"].items():
            accounted += t
            print(f"  {t:7.3f} s {100 * t / r['cpu_s']:5.1f}%  {stage}  "
                  f"({r['calls'][stage]} calls)")
        rest = r["cpu_s"] - accounted
        print(f"  {rest:7.3f} s {100 * rest / r['cpu_s']:5.1f}%  other (hand-offs, interpreter)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cb-stages"))
    ap.add_argument("--plain", action="store_true", help="no wrappers: the overhead")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--no-dircache", action="store_true",
                    help="no cache directory: the re-backup decodes every parent tree")
    ap.add_argument("--workers", type=int, help="file-saver threads (default: the backup's)")
    ap.add_argument("--save-procs", type=int,
                    help="save worker processes (default: the backup's; 0: threads only)")
    a = ap.parse_args(argv)
    results = run(a.src, a.workdir, not a.plain, not a.no_dircache, a.workers, a.save_procs)
    show(results)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    shutil.rmtree(a.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
