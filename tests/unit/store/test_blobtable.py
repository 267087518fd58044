"""The read-only index view (store/blobtable.py) against a plain model: over one to three
compact files with duplicate blobs (in two packs, a pack listed by two files, ids that
share an 8-byte prefix), ``resolve`` finds the first copy in lookup order whose pack is
not excluded -- what ``StoreIndex.get`` finds --, ``live_totals`` sums exactly the set
bits' records per pack, and ``entries``/``iter_packs`` give every pack's entries."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.store.blobtable import BlobTable
from casbackup.store.compactindex import columns_from_packs, write_anonymous
from casbackup.store.index import StoreIndex
from casbackup.store.pack import PackEntry

Rows = list[tuple[str, str, int, list[PackEntry]]]


def _ids(n: int, seed: int) -> list[bytes]:
    """N ids, some pairs sharing their first 8 bytes (a prefix collision)."""
    rnd = np.random.default_rng(seed)
    out = [bytes(rnd.integers(0, 256, 32, dtype=np.uint8)) for _ in range(n)]
    for i in range(0, n - 1, 7):
        out[i + 1] = out[i][:8] + out[i + 1][8:]
    return out


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[Rows], list[bytes]]:
    pool = _ids(draw(st.integers(1, 40)), draw(st.integers(0, 2**16)))
    files: list[Rows] = []
    packs: list[tuple[str, str, int, list[PackEntry]]] = []
    for _ in range(draw(st.integers(1, 3))):
        rows: Rows = []
        for _ in range(draw(st.integers(0, 4))):
            if packs and draw(st.booleans()) and draw(st.booleans()):
                rows.append(draw(st.sampled_from(packs)))  # a pack listed again
                continue
            picks = draw(st.lists(st.sampled_from(pool), max_size=8, unique=True))
            kind = draw(st.sampled_from(["data", "tree"]))
            ents = [PackEntry(kind, b, 100 * i, 10 + i, 5) for i, b in enumerate(picks)]
            p = (os.urandom(32).hex(), kind, 1000, ents)
            packs.append(p)
            rows.append(p)
        if rows:
            files.append(rows)
    return files, pool


def _table(files: list[Rows]) -> BlobTable:
    idx = StoreIndex()
    idx.set_bases([write_anonymous(columns_from_packs([os.urandom(32).hex()], rows))
                   for rows in files])
    return BlobTable.of(idx)


def _model_positions(files: list[Rows], t: BlobTable) -> list[tuple[bytes, str]]:
    """(id, pack) per position, in position order: each file's records sorted by prefix
    (ties in the order loaded), a pack listed twice in one file kept once."""
    out: list[tuple[bytes, str]] = []
    for rows in files:
        seen: set[str] = set()
        recs = []
        for name, _k, _s, ents in rows:
            if name in seen:
                continue
            seen.add(name)
            recs += [(e.id, name) for e in ents]
        recs.sort(key=lambda r: r[0][:8])
        out += recs
    assert len(out) == t.n
    return out


@settings(max_examples=60, deadline=None)
@given(layouts(), st.data())
def test_the_view_equals_a_plain_model(layout: tuple[list[Rows], list[bytes]],
                                       data: st.DataObject) -> None:
    files, pool = layout
    t = _table(files)
    model = _model_positions(files, t)
    for pos, (bid, pack) in enumerate(model):
        assert t.entry_at(pos)[1].id == bid and t.entry_at(pos)[0] == pack
    names = sorted({p for _, p in model} | {r[0] for rows in files for r in rows})
    assert t.names == names
    # a pack listed in two files counts the first file's records, as its entries do
    assert [t.pack_count(no) for no in range(t.n_packs)] == [
        len(t.pack_entries(no)) for no in range(t.n_packs)]
    assert sum(t.pack_count(no) for no in range(t.n_packs)) == sum(
        len({e.id for e in r[3]}) for r in {r[0]: r for rows in files for r in rows}.values())
    excluded_names = set(data.draw(st.lists(st.sampled_from(names), unique=True))
                         if names else [])
    ex = t.mask(excluded_names)
    probe = pool + [os.urandom(32)]
    got = t.resolve(probe, ex).tolist()
    for bid, pos in zip(probe, got, strict=True):
        want = next((i for i, (b, p) in enumerate(model)
                     if b == bid and p not in excluded_names), -1)
        assert pos == want
    assert t.resolve(probe).tolist() == [
        next((i for i, (b, _) in enumerate(model) if b == bid), -1) for bid in probe]
    # live totals: the set bits' records, per pack
    live = np.array(data.draw(st.lists(st.booleans(), min_size=t.n, max_size=t.n)), bool)
    count, nbytes = t.live_totals(live)
    for no, name in enumerate(t.names):
        mine = [i for i, (_, p) in enumerate(model) if p == name and live[i]]
        assert count[no] == len(mine)
        assert nbytes[no] == sum(t.entry_at(i)[1].length for i in mine)
    # entries of every pack: the first file's records listing it, by offset
    want_entries = {}
    for rows in files:
        for name, _k, _s, ents in rows:
            want_entries.setdefault(name, sorted(ents, key=lambda e: e.offset))
    pairs_of = {no: t.pack_pairs(no) for no in range(t.n_packs)}
    got_entries = {t.names[no]: [e for _, e in pairs]
                   for no, pairs in pairs_of.items() if pairs}
    assert got_entries == {n: e for n, e in want_entries.items() if e}
    for no, pairs in pairs_of.items():
        for pos, e in pairs:
            assert model[pos] == (e.id, t.names[no])
    assert {p.name: p.entries for p in t.iter_packs()} == want_entries


def _rss_file() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("RssFile:"))


def test_whole_file_passes_keep_a_bounded_part_of_the_mapping_resident() -> None:
    """``check_all`` and the column passes drop the mapping's pages as they go: gc and
    verify over a 10M-record file (560 MiB) held all of it resident before (RssFile,
    which counts in the peak RSS), now about one chunk. Counted, not timed."""
    n, per_pack = 800_000, 1000
    rows = [(os.urandom(32).hex(), "data", per_pack * 100,
             [PackEntry("data", os.urandom(32), 100 * i, 100, 90) for i in range(per_pack)])
            for _ in range(n // per_pack)]
    f = write_anonymous(columns_from_packs([os.urandom(32).hex()], rows))
    del rows
    size = n * 56
    idx = StoreIndex()
    idx.set_bases([f])
    before = _rss_file()
    t = BlobTable.of(idx)  # checks every block of the file
    after_check = _rss_file() - before
    most = 0
    for _pos, _k, rec, _packs in t._chunks():
        int(rec["length"].sum())  # every record of the chunk read
        most = max(most, _rss_file() - before)
    bound = 18 << 20  # one chunk (2^18 records, 12.6 MiB) or 256 checked blocks, + slack
    assert size > 2 * bound
    assert after_check <= bound, f"check_all left {after_check >> 20} MiB of the file resident"
    assert most <= bound, f"a pass held {most >> 20} MiB of the {size >> 20} MiB file"
    count, _ = t.live_totals(np.ones(t.n, bool))
    assert int(count.sum()) == n
