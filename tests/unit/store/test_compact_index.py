"""The compact index (store/compactindex.py, store/indexcache.py, StoreIndex): equal to a
plain dict model, derived and checked (a damaged file is rebuilt, never trusted), safe
with two processes building at once, and incremental on a real store."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.crypto.codec import DATA
from casbackup.store import compactindex, indexcache
from casbackup.store.compactindex import (
    BLOCK,
    SUFFIX,
    CacheDamaged,
    Columns,
    CompactFile,
    file_name,
    merge_files,
    write_file,
)
from casbackup.store.index import StoreIndex
from casbackup.store.indexcache import Fetched
from casbackup.store.pack import PackEntry
from casbackup.store.store import Store
from tests.helpers import PASSWORD, count_preads, make_store

Rows = list[tuple[str, str, int, list[PackEntry]]]


def _hexname(i: int, salt: str) -> str:
    import blake3

    return blake3.blake3(f"{salt}{i}".encode()).hexdigest()


# a small id space (with shared 8-byte prefixes) makes duplicates and prefix ties common
ids = st.builds(lambda p, r: bytes([p]) * 8 + bytes([r]) * 24,
                st.integers(0, 5), st.integers(0, 3))
entry = st.tuples(ids, st.integers(0, 2**40), st.integers(0, 2**31), st.integers(0, 2**31))
# a pack's name fixes its content (as in a store); index objects name packs
packs = st.dictionaries(st.integers(0, 30), st.tuples(st.sampled_from(["data", "tree"]),
                                                      st.lists(entry, max_size=6)),
                        max_size=20)
objects = st.dictionaries(st.integers(0, 12), st.lists(st.integers(0, 30), max_size=4),
                          max_size=8)
Packs = dict[int, tuple[str, list[tuple[bytes, int, int, int]]]]


def _rows(content: Packs, numbers: list[int]) -> Rows:
    out: Rows = []
    for no in numbers:
        if no in content:
            kind, entries = content[no]
            out.append((_hexname(no, "pack"), kind, 1000 + no,
                        [PackEntry(kind, i, o, n, r) for i, o, n, r in entries]))
    return out


def _model(objs: dict[str, Rows], excluded: set[str]) -> dict[bytes, set[tuple[str, PackEntry]]]:
    """blob id -> every (pack, entry) that may be answered."""
    out: dict[bytes, set[tuple[str, PackEntry]]] = {}
    for rows in objs.values():
        for pname, _kind, _size, entries in rows:
            if pname not in excluded:
                for e in entries:
                    out.setdefault(e.id, set()).add((pname, e))
    return out


def _check(index: StoreIndex, model: dict[bytes, set[tuple[str, PackEntry]]],
           universe: set[bytes]) -> None:
    for bid in universe:
        loc = index.get(bid)
        if bid in model:
            assert loc is not None and (loc.pack, loc.entry) in model[bid]
            assert bid in index
        else:
            assert loc is None and bid not in index
        # the membership call of each file answers exactly as its find does
        for f in index.bases:
            assert f.contains(bid) == (f.find(bid) is not None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=packs, first=objects, later=objects, dropped=st.sets(st.integers(0, 12)),
       excluded=st.sets(st.integers(0, 30)), window=st.sampled_from([1, 2, 3, 7, 1 << 17]))
def test_equal_to_a_dict_model_across_add_exclude_and_reload(
        content: Packs, first: dict[int, list[int]], later: dict[int, list[int]],
        dropped: set[int], excluded: set[int], window: int) -> None:
    """WINDOW: records per round of the streaming merge (tiny ones cut through runs of
    equal prefixes, so the rounds' boundaries are exercised)."""
    saved, compactindex.MERGE_WINDOW = compactindex.MERGE_WINDOW, window
    try:
        _model_run(content, first, later, dropped, excluded)
    finally:
        compactindex.MERGE_WINDOW = saved


def _model_run(content: Packs, first: dict[int, list[int]], later: dict[int, list[int]],
               dropped: set[int], excluded: set[int]) -> None:
    objs = {_hexname(k, "obj"): _rows(content, v) for k, v in first.items()}
    universe = {i for _k, entries in content.values() for i, *_ in entries}
    universe.add(b"\x07" * 32)
    ex = {_hexname(i, "pack") for i in excluded}
    with tempfile.TemporaryDirectory() as d:
        fetched: list[str] = []

        def fetch(name: str) -> Fetched:
            fetched.append(name)
            return Fetched(objs[name])

        index = StoreIndex()
        index.set_bases(*indexcache.cover(Path(d), objs, fetch))
        _check(index, _model(objs, set()), universe)
        index.set_excluded(frozenset(ex))
        _check(index, _model(objs, ex), universe)
        # other writers add objects and some are consolidated away: a reload reads only
        # the objects it has no file for
        for k, v in later.items():
            objs.setdefault(_hexname(k + 100, "obj"), _rows(content, v))
        for k in dropped:
            objs.pop(_hexname(k, "obj"), None)
        fetched.clear()
        again = StoreIndex()
        again.set_excluded(frozenset(ex))
        again.set_bases(*indexcache.cover(Path(d), objs, fetch))
        _check(again, _model(objs, ex), universe)
        assert len(fetched) == len(set(fetched))
        assert {s for f in again.bases for s in f.sources} == set(objs)
        # a third load of the same set builds nothing
        fetched.clear()
        third = StoreIndex()
        third.set_bases(*indexcache.cover(Path(d), objs, fetch))
        assert fetched == []
        _check(third, _model(objs, set()), universe)


def _big_rows(n_packs: int, per_pack: int, salt: str = "") -> Rows:
    out: Rows = []
    for p in range(n_packs):
        entries = [PackEntry("data", bytes.fromhex(_hexname(p * per_pack + i, "blob" + salt)),
                             i * 100, 100, 90) for i in range(per_pack)]
        out.append((_hexname(p, "bigpack" + salt), "data", per_pack * 100, entries))
    return out


def _one_file(d: Path, rows: Rows) -> tuple[str, Path]:
    name = _hexname(1, "source")
    files, _ = indexcache.cover(d, [name], lambda _n: Fetched(rows))
    assert len(files) == 1
    return name, files[0].path


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


@pytest.mark.parametrize("where", ["header", "pack table", "last byte", "truncated",
                                   "appended"])
def test_a_damaged_file_is_refused_at_open_and_rebuilt(tmp_path: Path, where: str) -> None:
    rows = _big_rows(3, 50)
    name, path = _one_file(tmp_path, rows)
    size = path.stat().st_size
    if where == "header":
        _flip(path, 20)
    elif where == "pack table":
        _flip(path, 64 + 32 + 5)
    elif where == "last byte":
        _flip(path, size - 1)
    elif where == "truncated":
        os.truncate(path, size - 10)
    else:
        with open(path, "ab") as f:
            f.write(b"x")
    if where != "last byte":  # a record byte is only checked by the lookup touching it
        with pytest.raises(CacheDamaged):
            CompactFile(path, [name])
    calls: list[str] = []
    warned: list[str] = []
    files, _ = indexcache.cover(tmp_path, [name],
                                lambda n: calls.append(n) or Fetched(rows), warned.append)
    index = StoreIndex()
    index.set_bases(files)
    index.rebuild = lambda f: indexcache.build(tmp_path, f.sources, lambda n: Fetched(rows))
    for _pname, _k, _s, entries in rows:
        for e in entries:
            loc = index.lookup(e.id)
            assert loc.entry == e
    assert where == "last byte" or calls == [name]
    assert CompactFile(path, [name]).n == 150


def test_a_flipped_record_byte_is_found_by_the_lookup_and_rebuilt(tmp_path: Path) -> None:
    rows = _big_rows(4, BLOCK)  # several blocks
    name, path = _one_file(tmp_path, rows)
    f = CompactFile(path, [name])
    victim = rows[2][3][7]
    # the record block holding ``victim``: damage a byte of its record
    pre = f.columns().prefixes
    i = next(k for k in range(f.n) if pre[k] == int.from_bytes(victim.id[:8], "big"))
    f.close()
    _flip(path, path.stat().st_size - (f.n - i) * 48 + 30)  # its length field
    f = CompactFile(path, [name])  # the header is intact: opens
    with pytest.raises(CacheDamaged):
        f.find(victim.id)
    rebuilt: list[str] = []
    index = StoreIndex()
    index.set_bases([f])

    def rebuild(damaged: CompactFile) -> CompactFile:
        rebuilt.append(damaged.path.name)
        damaged.path.unlink()
        return indexcache.build(tmp_path, damaged.sources, lambda _n: Fetched(rows))

    index.rebuild = rebuild
    assert victim.id in index  # membership meets the damage too, and rebuilds
    assert rebuilt == [path.name]
    assert index.lookup(victim.id).entry == victim  # never the damaged offset
    assert rebuilt == [path.name]


def test_a_file_of_another_set_is_never_used(tmp_path: Path) -> None:
    rows = _big_rows(2, 10)
    name, path = _one_file(tmp_path, rows)
    other = _hexname(2, "source")
    wrong = tmp_path / file_name([other])
    path.rename(wrong)  # a file claiming to be the index of ``other``
    with pytest.raises(CacheDamaged):
        CompactFile(wrong, [other])
    other_rows = _big_rows(1, 5, "other")
    files, _ = indexcache.cover(tmp_path, [other], lambda _n: Fetched(other_rows))
    index = StoreIndex()
    index.set_bases(files)
    assert rows[0][3][0].id not in index
    assert index.lookup(other_rows[0][3][0].id).pack == other_rows[0][0]


def test_files_merge_like_a_binary_counter(tmp_path: Path) -> None:
    names: list[str] = []
    rows: dict[str, Rows] = {}
    for k in range(12):
        n = _hexname(k, "counter")
        names.append(n)
        rows[n] = _big_rows(1, 20, str(k))
        files, _ = indexcache.cover(tmp_path, names, lambda x: Fetched(rows[x]))
        sizes = sorted((len(f) for f in files), reverse=True)
        assert all(sizes[i] >= 2 * sum(sizes[i + 1:]) for i in range(len(sizes) - 1))
        assert len(files) <= 4
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == len(files) and all(p.endswith(SUFFIX) for p in left)


def _synthetic_file(d: Path, salt: int, n: int, n_packs: int) -> CompactFile:
    """A compact file of N random records over N_PACKS packs, made with numpy directly
    (Python objects per entry would be what the test must not measure)."""
    import numpy as np

    rng = np.random.default_rng(salt)
    pack_dt, rec_dt = compactindex._dtypes()
    ptab = np.zeros(n_packs, pack_dt)
    ptab["name"] = np.sort(np.frombuffer(rng.bytes(32 * n_packs), "V32"))
    ptab["size"] = 1 << 20
    recs = np.zeros(n, rec_dt)
    recs["rest"] = np.frombuffer(rng.bytes(24 * n), "V24")
    recs["pack"] = rng.integers(0, n_packs, n, dtype=np.uint32)
    recs["length"], recs["offset"], recs["raw"] = 100, np.arange(n) * 100, 90
    pre = rng.integers(0, 2**63, n, dtype=np.uint64)
    order = np.argsort(pre, kind="stable")
    cols = Columns([_hexname(salt, "synthetic")], ptab, pre[order], recs[order])
    return CompactFile(write_file(d, cols), cols.sources)


def test_a_merge_holds_a_window_not_its_inputs(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Merging files of 600k records in all (34 MB of records) allocates at most a few
    windows: the whole-columns merge it replaced peaked at about three times its input."""
    import tracemalloc

    import numpy as np

    monkeypatch.setattr(compactindex, "MERGE_WINDOW", 1 << 15)
    inputs = [_synthetic_file(tmp_path, k, 200_000, 40) for k in range(3)]
    total = sum(len(f) for f in inputs)
    tracemalloc.start()
    try:
        merged = merge_files(tmp_path, inputs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, f"the merge allocated {peak >> 20} MiB at its peak"
    assert len(merged) == total and sorted(merged.sources) == sorted(
        s for f in inputs for s in f.sources)
    # every record is in the merged file, in order, naming the same pack and offset
    cols = merged.columns()
    assert np.all(cols.prefixes[1:] >= cols.prefixes[:-1])
    rng = np.random.default_rng(7)
    for f in inputs:
        mine = f.columns()
        for i in rng.integers(0, len(f), 50):
            blob = int(mine.prefixes[i]).to_bytes(8, "big") + bytes(mine.records["rest"][i])
            got = merged.find(blob)
            name, _kind, _size = f.pack(int(mine.records["pack"][i]))
            assert got is not None and got[0] == name
            assert got[1].offset == int(mine.records["offset"][i])


def test_a_spill_holds_no_whole_column_copy(tmp_path: Path) -> None:
    """Columns made of a writer's packs (a spill) and written: the records are made in
    sorted order in place and written as views, so the traced peak is the flat input,
    the records and the order (~126 B a record), not the sorted and byte copies besides
    them (174 B a record before: a backup's spike at each index object). Counted."""
    import tracemalloc

    n, per = 100_000, 1000
    rows = [(os.urandom(32).hex(), "data", per * 100,
             [PackEntry("data", os.urandom(32), 100 * i, 100, 90) for i in range(per)])
            for _ in range(n // per)]
    import numpy  # noqa: F401  (imported before the trace: the spill needs it anyway)

    tracemalloc.start()
    try:
        f = compactindex.write_anonymous(compactindex.columns_from_packs(["00" * 32], rows),
                                         tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / n < 140, f"the spill peaked at {peak / n:.0f} B a record"
    assert len(f) == n
    for _name, _k, _s, entries in rows[::7]:
        for e in entries[::50]:
            got = f.find(e.id)
            assert got is not None and got[1] == e


def test_a_merge_with_a_damaged_input_writes_nothing(tmp_path: Path) -> None:
    a, b = (_synthetic_file(tmp_path, k, 5 * BLOCK, 3) for k in (1, 2))
    path = b.path
    b.close()
    _flip(path, path.stat().st_size - 100)  # a record of its last block
    b = CompactFile(path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CacheDamaged):
        merge_files(tmp_path, [a, b])
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _rss_file() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("RssFile:"))


def test_lookups_map_none_of_the_file(tmp_path: Path) -> None:
    """Lookups and block checks read with ``pread``: 3,000 lookups spread over a file of
    400k records (22 MB; most of its blocks checked by them) leave this process's
    file-backed resident pages where they were. Through the mapping each fault mapped a
    page-cache folio (~900 KiB a touch on Linux 6.18): a 200-file restore at 10M blobs
    held 60-130 MiB of the file in its peak RSS. Counted (RssFile), not timed."""
    import numpy as np

    f = _synthetic_file(tmp_path, 3, 400_000, 40)
    cols = f.columns()
    pick = np.random.default_rng(5).integers(0, f.n, 2000)
    present = [int(cols.prefixes[i]).to_bytes(8, "big") + bytes(cols.records["rest"][i])
               for i in pick]
    want = [int(cols.records["offset"][i]) for i in pick]
    del cols
    f = CompactFile(f.path, f.sources)  # fresh: no block checked yet
    index = StoreIndex()
    index.set_bases([f])
    before = _rss_file()
    got = [index.lookup(b).entry.offset for b in present]
    assert all(b in index for b in present)
    assert not any(os.urandom(32) in index for _ in range(1000))
    grew = _rss_file() - before
    assert got == want
    assert sum(f._checked) > 300  # the lookups checked many blocks (56 KiB each)
    assert grew < 1 << 20, f"lookups left {grew >> 10} KiB of the file resident"


def test_lookups_from_many_threads_take_no_lock(tmp_path: Path) -> None:
    """Issue #12 item 2: a backup's threads look blobs up at once; no lookup takes the
    index's lock (counted through a wrapper), and every answer is right."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    rows = _big_rows(8, BLOCK, "threads")
    _name, path = _one_file(tmp_path, rows)
    index = StoreIndex()
    index.set_bases([CompactFile(path)])
    taken = [0]
    real = threading.Lock()

    class Counting:
        def __enter__(self) -> None:
            taken[0] += 1
            real.acquire()

        def __exit__(self, *exc: object) -> None:
            real.release()

    index._lock = Counting()  # type: ignore[assignment]
    want = {e.id: e for _n, _k, _s, es in rows for e in es}

    def look(ids: list[bytes]) -> bool:
        return all(index.lookup(b).entry == want[b] and b in index for b in ids) and not any(
            os.urandom(32) in index for _ in range(200))

    ids = list(want)
    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(look, [ids[k::4] for k in range(4)]))
    assert taken[0] == 0


def test_a_file_truncated_under_a_reader_is_damaged_and_rebuilt(tmp_path: Path) -> None:
    """A cache file cut short after it was opened (another process, a full disk's
    repair): a lookup meets a short read and raises ``CacheDamaged`` -- a mapping would
    have killed the process with SIGBUS -- and the index rebuilds the file and answers."""
    rows = _big_rows(4, BLOCK)
    name, path = _one_file(tmp_path, rows)
    f = CompactFile(path, [name])
    os.truncate(path, f._pre_off + 8)  # every block's prefixes and records gone
    victim = rows[1][3][5]
    with pytest.raises(CacheDamaged, match="truncated"):
        f.find(victim.id)
    with pytest.raises(CacheDamaged):
        f.contains(victim.id)
    index = StoreIndex()
    index.set_bases([f])
    rebuilt: list[str] = []

    def rebuild(damaged: CompactFile) -> CompactFile:
        rebuilt.append(damaged.path.name)
        damaged.path.unlink()
        return indexcache.build(tmp_path, damaged.sources, lambda _n: Fetched(rows))

    index.rebuild = rebuild
    assert index.lookup(victim.id).entry == victim
    assert rebuilt == [path.name]
    assert all(e.id in index for _n, _k, _s, es in rows for e in es)


# ----- a real store ------------------------------------------------------------------


def _store_with_objects(path: Path, n: int) -> tuple[Store, list[bytes]]:
    st = make_store(path)
    st.cache_dir = path.parent / "cache"
    st.cache_dir.mkdir(exist_ok=True)
    blobs = []
    for i in range(n):
        blobs.append(st.add_blob(DATA, f"blob {i} ".encode() * 50).id)
        st.flush()  # one index object each
    return st, blobs


def _reopen(path: Path) -> Store:
    from casbackup.store import open_store
    from casbackup.store.cachedir import CacheSettings

    return open_store(str(path), lambda: PASSWORD, cache=CacheSettings(path.parent / "cache"))


def _counting(st: Store) -> list[str]:
    """Names of the index objects ``st`` reads from now on (through its one read path)."""
    reads: list[str] = []
    orig = st.read_object

    def counted(prefix: str, name: str, kind: str) -> bytes:
        if prefix == "index/":
            reads.append(name)
        return orig(prefix, name, kind)

    st.read_object = counted  # type: ignore[method-assign]
    return reads


def test_a_second_command_reads_only_the_objects_added_since(tmp_path: Path) -> None:
    st, blobs = _store_with_objects(tmp_path / "s", 5)
    st.close()
    a = _reopen(tmp_path / "s")
    reads = _counting(a)
    a.load_index()
    assert len(reads) == 5 and all(a.has_blob(b) for b in blobs)
    a.close()
    b = _reopen(tmp_path / "s")
    reads = _counting(b)
    b.load_index()
    assert reads == [] and all(b.get_blob(x) for x in blobs)
    new = b.add_blob(DATA, b"another writer" * 10).id
    b.flush()
    b.close()
    c = _reopen(tmp_path / "s")
    reads = _counting(c)
    c.load_index()
    # b built a file of the object it wrote when it closed: nothing to read
    assert reads == [] and c.has_blob(new) and all(c.has_blob(x) for x in blobs)
    c.close()
    from casbackup.store import open_store
    from casbackup.store.cachedir import CacheSettings

    other = open_store(str(tmp_path / "s"), lambda: PASSWORD,
                       cache=CacheSettings.disabled())  # another host: not our cache
    theirs = other.add_blob(DATA, b"a writer elsewhere" * 10).id
    other.flush()
    other.close()
    d = _reopen(tmp_path / "s")
    reads = _counting(d)
    d.load_index()
    assert len(reads) == 1 and d.has_blob(theirs) and d.has_blob(new)
    d.close()


def test_a_condemned_pack_is_not_found_in_the_cached_index(tmp_path: Path) -> None:
    st, blobs = _store_with_objects(tmp_path / "s", 3)
    st.close()
    a = _reopen(tmp_path / "s")
    a.load_index()
    loc = a.locate(blobs[1])
    a.exclude_packs([loc.pack])
    assert not a.has_blob(blobs[1]) and a.index.get(blobs[1]) is None
    assert a.has_blob(blobs[0]) and a.has_blob(blobs[2])
    a.close()
    b = _reopen(tmp_path / "s")  # excluded before the load, as a write session does
    b.exclude_packs([loc.pack])
    b.load_index()
    assert not b.has_blob(blobs[1]) and b.has_blob(blobs[0])
    assert loc.pack not in {p.name for p in b.index.iter_packs()}
    b.exclude_packs([])
    assert b.has_blob(blobs[1])
    b.close()


def test_a_damaged_cache_file_of_a_real_store_is_rebuilt(tmp_path: Path) -> None:
    st, blobs = _store_with_objects(tmp_path / "s", 3)
    st.close()
    a = _reopen(tmp_path / "s")
    a.load_index()
    a.close()
    assert a.cache_dir is not None
    (f,) = list((a.cache_dir / "compact-index").iterdir())
    _flip(f, f.stat().st_size - 5)  # inside the last record
    b = _reopen(tmp_path / "s")
    warned: list[str] = []
    b.on_warning = warned.append
    assert [b.get_blob(x) for x in blobs] == [f"blob {i} ".encode() * 50 for i in range(3)]
    assert warned and "damaged" in warned[0]
    b.close()
    CompactFile(f, [s for s in CompactFile(f).sources])  # the rebuilt file is whole


_BUILDER = """
import sys
from pathlib import Path
from casbackup.store import open_store
from casbackup.store.cachedir import CacheSettings
st = open_store(sys.argv[1], lambda: {pw!r}, cache=CacheSettings(Path(sys.argv[2])))
st.load_index()
want = [bytes.fromhex(h) for h in sys.argv[3].split(",")]
assert all(st.has_blob(b) for b in want)
print(len(st.index))
"""


def test_two_processes_building_at_once(tmp_path: Path) -> None:
    st, blobs = _store_with_objects(tmp_path / "s", 12)
    st.close()
    cache = tmp_path / "cache"
    code = _BUILDER.format(pw=PASSWORD)
    arg = ",".join(b.hex() for b in blobs)
    for _ in range(3):
        for f in cache.glob("*/compact-index/*"):
            f.unlink()
        procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s"), str(cache),
                                   arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
            assert int(out) == 12
        left = list(cache.glob("*/compact-index/*"))
        assert left and all(f.name.endswith(SUFFIX) for f in left)  # no temp files left
        for f in left:
            CompactFile(f)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=packs, order=st.lists(st.integers(0, 30), max_size=24),
       cuts=st.lists(st.booleans(), min_size=24, max_size=24),
       excluded=st.sets(st.integers(0, 30)))
def test_the_spilled_layer_answers_like_the_dicts(
        content: Packs, order: list[int], cuts: list[bool], excluded: set[int]) -> None:
    """``StoreIndex.spill`` (a writer's durable objects leave the dicts for unnamed
    sorted files, merged like a binary counter) answers every lookup as an index that
    never spilled: duplicates across packs, shared prefixes, a pack added again after
    its spill, and exclusion once everything is spilled."""
    from casbackup.store.index import PackInfo

    idx, ref = StoreIndex(), StoreIndex()
    added: dict[str, Rows] = {}
    pending: list[PackInfo] = []
    for k, no in enumerate(order):
        if no not in content:
            continue
        (row,) = _rows(content, [no])
        p = PackInfo(*row)
        idx.add_pack(p)
        ref.add_pack(p)
        added[f"{no}"] = [row]
        pending.append(p)
        if cuts[k]:
            idx.spill(_hexname(k, "obj"), pending)
            pending = []
        universe = {i for _k, entries in content.values() for i, *_ in entries}
        universe.add(b"\x07" * 32)
        model = _model(added, set())
        _check(idx, model, universe)
        for bid in universe:
            assert (bid in idx) == (bid in ref)
    idx.spill(_hexname(99, "obj"), pending)
    assert not idx.blobs and len(idx.spilled) <= max(1, len(order).bit_length() + 1)
    ex = {_hexname(i, "pack") for i in excluded}
    idx.set_excluded(frozenset(ex))
    universe = {i for _k, entries in content.values() for i, *_ in entries}
    _check(idx, _model(added, ex), universe)



def test_a_dedup_check_against_spilled_files_makes_no_system_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup's spilled files keep their prefixes in memory (``hold_prefixes``): a
    lookup of a new (absent) blob reads nothing, one of a present blob one record. Read
    through ``pread`` each lookup cost a ~3 us system call per file (+1.2 CPU-s on a
    200k-file backup). Counted."""
    from casbackup.store.index import PackInfo

    idx = StoreIndex()
    rows = _big_rows(6, 700, "spill")
    for k, row in enumerate(rows):
        p = PackInfo(*row)
        idx.add_pack(p)
        idx.spill(_hexname(k, "obj"), [p])
    assert not idx.blobs and idx.spilled
    calls = count_preads(monkeypatch)
    assert not any(os.urandom(32) in idx for _ in range(2000))
    assert calls[0] == 0
    present = [e for _n, _k, _s, es in rows for e in es[::10]]
    assert all(idx.lookup(e.id).entry == e for e in present)
    assert calls[0] == len(present)  # one record read each, in the one file holding it


def test_a_spill_whose_file_reads_back_damaged_is_named_corruption(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A spilled file failing its check as it is read back (a failing disk) is an
    IntegrityError naming it, and the blobs stay in the dicts (nothing lost)."""
    from casbackup.errors import IntegrityError
    from casbackup.store.index import PackInfo

    real = CompactFile._check_block

    def flaky(self: CompactFile, b: int) -> None:
        if self.anonymous:
            raise CacheDamaged(f"{self.path.name}: block {b} checksum mismatch")
        real(self, b)

    idx = StoreIndex()
    (row,) = _big_rows(1, 300, "flaky")
    p = PackInfo(*row)
    idx.add_pack(p)
    monkeypatch.setattr(CompactFile, "_check_block", flaky)
    with pytest.raises(IntegrityError, match="spilled index file"):
        idx.spill(_hexname(0, "obj"), [p])
    assert not idx.spilled and all(idx.lookup(e.id).entry == e for e in p.entries)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    from tests.helpers import tmpfs_or_skip
    yield from tmpfs_or_skip(tmp_path / "small", "64k")


def test_a_full_disk_under_a_nameless_index_file_names_its_directory(
        tiny_tmpfs: Path) -> None:
    """O_TMPFILE has no name, so ENOSPC while writing one would name nothing (the CLI
    printed "No space left on device: "): the error names the directory instead."""
    import errno

    from casbackup.store.compactindex import columns_from_packs, write_anonymous
    from casbackup.store.pack import PackEntry

    ents = [PackEntry("data", os.urandom(32), 100 * i, 10, 5) for i in range(20_000)]
    cols = columns_from_packs([os.urandom(32).hex()], [(os.urandom(32).hex(), "data",
                                                         10**7, ents)])
    with pytest.raises(OSError) as caught:
        write_anonymous(cols, tiny_tmpfs)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tiny_tmpfs)
