"""The index encoder's pack-at-a-time and column paths write the bytes ``serde.pack``
writes for the whole map (gc's record and consolidated index): every msgpack width of
an unsigned int, packs of 0 to a few chunks of rows."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup import serde
from casbackup.store.index import ROW_CHUNK, IndexEncoder, PackColumns, PackInfo
from casbackup.store.pack import PackEntry

EDGES = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1]
u32 = st.one_of(st.sampled_from(EDGES), st.integers(0, 2**32 - 1))
u64 = st.one_of(u32, st.sampled_from([2**32, 2**40, 2**63 - 1]))


def _columns(p: PackInfo) -> PackColumns:
    ids = np.frombuffer(b"".join(e.id for e in p.entries), np.uint8).reshape(-1, 32)
    offs = np.array([e.offset for e in p.entries], np.uint64)
    lens = np.array([e.length for e in p.entries], np.uint32)
    raws = np.array([e.raw_length for e in p.entries], np.uint32)
    return PackColumns(p.name, p.kind, p.size, len(offs),
                       lambda lo, hi: (ids[lo:hi], offs[lo:hi], lens[lo:hi], raws[lo:hi]))


@settings(max_examples=60)
@given(packs=st.lists(st.tuples(st.integers(0, 2 * ROW_CHUNK + 3), u64, u32, u32,
                                st.booleans(), st.integers(0, 2**40)), max_size=4),
       sup=st.lists(st.text(max_size=8), max_size=3), exact=st.booleans())
def test_encoder_writes_serde_pack_of_the_whole_map(
        packs: list[tuple[int, int, int, int, bool, int]], sup: list[str],
        exact: bool) -> None:
    infos = []
    for n, off, ln, raw, as_cols, size in packs:
        # one row of the drawn values, the rest spread over the widths
        entries = [PackEntry("tree", os.urandom(32), off if j == 0 else EDGES[j % 9] * j,
                             ln if j == 0 else EDGES[j % 9], raw if j == 0 else j)
                   for j in range(n)]
        infos.append((PackInfo(os.urandom(32).hex(), "tree", size, entries), as_cols))
    enc = IndexEncoder()
    for p, as_cols in infos:
        enc.add(_columns(p) if as_cols else p)
        assert not as_cols or _columns(p).to_info() == p
    want = {"packs": [{"id": p.name, "kind": p.kind, "size": p.size,
                       "blobs": [[e.id, e.offset, e.length, e.raw_length] for e in p.entries]}
                      for p, _ in infos], "supersedes": sup}
    if exact:
        want["exact"] = True
    assert bytes(enc.view(enc.finish(sup, exact))) == serde.pack(want)
    assert enc.names == [p.name for p, _ in infos]
    assert enc.blobs == sum(len(p.entries) for p, _ in infos)
