"""restore's blob plan: where each needed blob goes, and how a blob is written.

Invariants:
- ``fill_plan`` plans, per pack, each blob **once** with every (item, file offset) that
  uses it, so the restorer fetches each pack once and only the byte ranges of needed
  blobs; only files that are written are planned (NEW and REPLACE: every blob; UPDATE:
  only the blobs the survey found differing and not elsewhere in the file itself:
  ``restore_reuse`` copies those). A blob missing from the index raises
  before anything is written. A file whose blobs do not add up to its size is reported.
- ``nonzero_runs`` finds the aligned all-zero ``HOLE``-sized blocks of a blob: those are
  not written into a new file (which is created at its size), so zero runs stay holes.
- ``write_runs`` writes the given ranges of a blob at their offsets, looping over short
  writes; it never writes outside them.
"""

from __future__ import annotations

import os
from collections import defaultdict

from ..model.tree import FILE
from ..store import PackEntry, Store
from .restore_existing import SKIP, UNCHANGED, UPDATE, Survey
from .restore_plan import Item

HOLE = 64 * 1024  # zero runs of this many aligned bytes inside a blob become holes
_ZERO = bytes(HOLE)

# pack -> blob id -> (entry, [(item index, file offset)])
Plan = dict[str, dict[bytes, tuple[PackEntry, list[tuple[int, int]]]]]


def nonzero_runs(data: bytes | memoryview) -> list[tuple[int, int]]:
    """(start, end) ranges of ``data`` not covered by aligned all-zero ``HOLE`` blocks."""
    n = len(data)
    mv = memoryview(data)
    if n <= HOLE:
        return [] if mv == _ZERO[:n] else [(0, n)]
    runs: list[tuple[int, int]] = []
    start = -1
    for off in range(0, n, HOLE):
        end = min(off + HOLE, n)
        zero = mv[off:end] == _ZERO[: end - off]
        if zero and start >= 0:
            runs.append((start, off))
            start = -1
        elif not zero and start < 0:
            start = off
    if start >= 0:
        runs.append((start, n))
    return runs


def fill_plan(store: Store, items: list[Item], sv: Survey,
              ) -> tuple[Plan, list[int], list[tuple[int, str]]]:
    """Where each needed blob goes, how many blob slots each item has, and the files
    whose content does not add up to their size (warned about). Only the blobs of files
    written (new, replaced: all; updated in place: those that differ) are planned."""
    plan: Plan = defaultdict(dict)
    slots = [0] * len(items)
    short: list[tuple[int, str]] = []
    for i, it in enumerate(items):
        if it.node.type != FILE or it.link_to is not None or not it.node.content:
            continue
        v = sv.verdict[i]
        if v in (UNCHANGED, SKIP):
            continue
        need = sv.need.get(i) if v == UPDATE else None
        local = sv.copied(i) if v == UPDATE else set()  # copied within the file instead
        off = n = 0
        for k, bid in enumerate(it.node.content):
            loc = store.locate(bid)
            if need is None or (need[k] and k not in local):
                slot = plan[loc.pack].get(bid)
                if slot is None:
                    slot = plan[loc.pack][bid] = (loc.entry, [])
                slot[1].append((i, off))
                n += 1
            off += loc.entry.raw_length
        slots[i] = n
        if off != it.node.size:
            short.append((i, f"snapshot lists {off} bytes of content for size {it.node.size}"))
    return plan, slots, short


def write_runs(fd: int, data: bytes | memoryview, base: int,
                runs: list[tuple[int, int]]) -> None:
    for start, end in runs:
        mv, off = memoryview(data)[start:end], base + start
        while mv:
            n = os.pwrite(fd, mv, off)
            mv, off = mv[n:], off + n
