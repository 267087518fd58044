"""gc after forget, on real stores: for any choice of forgotten snapshots, what survives
is exactly what the kept snapshots reach plus the packs worth keeping, the record
(captured as gc puts it) names exactly the packs that are gone -- each with the entries
the index gave it -- and is the canonical encoding of what it says (the bytes
``serde.pack`` writes for the decoded map: the record and the consolidated index are
encoded a pack at a time, ``IndexEncoder``), and ``verify --read-data`` passes."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as hs

from casbackup import serde
from casbackup.crypto.codec import GC_RECORD
from casbackup.ids import DATA, TREE
from casbackup.model.snapshot import Snapshot
from casbackup.model.tree import FILE, Node, Tree
from casbackup.ops.gc import GcOptions, gc
from casbackup.ops.verify import verify
from casbackup.store import PackEntry, Store, maintainer
from tests.helpers import make_store, open_test_store

POOL = 24  # data blobs of 1000 random bytes, ~3 a pack of 4 KiB
SNAPS = 4
_n = itertools.count()


def _index(st: Store) -> dict[str, list[PackEntry]]:
    """Every pack the index objects name now, with its entries."""
    out: dict[str, list[PackEntry]] = {}
    for name in maintainer(st).index_names():
        for p in st.read_index_object(name):
            out.setdefault(p.name, p.entries)
    return out


def _canonical(plain: bytes) -> bool:
    m = serde.unpack(plain)
    inner = bytes(m["index"])
    return serde.pack(m) == plain and serde.pack(serde.unpack(inner)) == inner


@settings(max_examples=20)
@given(refs=hs.lists(hs.sets(hs.integers(0, POOL - 1), min_size=1), min_size=SNAPS,
                     max_size=SNAPS),
       forgotten=hs.sets(hs.integers(0, SNAPS - 1), min_size=1, max_size=SNAPS - 1))
def test_gc_after_forget_keeps_what_kept_snapshots_reach_and_records_what_goes(
        tmp_path_factory: object, refs: list[set[int]], forgotten: set[int]) -> None:
    path = Path(str(tmp_path_factory.mktemp(f"s{next(_n)}")))  # type: ignore[attr-defined]
    st = make_store(path / "store", pack_size=4096)
    pool = [st.add_blob(DATA, os.urandom(1000)).id for _ in range(POOL)]
    sids, reach = [], []
    for i, r in enumerate(refs):
        content = [pool[j] for j in sorted(r)]
        tid = st.add_blob(TREE, Tree([Node(name=b"f%d" % i, type=FILE,
                                           content=content)]).encode()).id
        sids.append(st.save_snapshot(Snapshot(time=float(i), hostname="h", username="u",
                                              paths=["/"], tree=tid)))
        reach.append({tid, *content})
    st.close()
    st = open_test_store(path / "store")
    before = _index(st)
    for i in forgotten:
        st.delete_snapshot(sids[i])
    kept = set().union(*(reach[i] for i in range(SNAPS) if i not in forgotten))
    records: list[bytes] = []
    put = st.put_named

    def spy(key: str, data: bytes | memoryview) -> None:
        if key.startswith("gc/"):
            records.append(st.codec.unseal(GC_RECORD, bytes(data)))
        put(key, data)

    st.put_named = spy  # type: ignore[method-assign]
    rep = gc(st, GcOptions())
    st.put_named = put  # type: ignore[method-assign]
    st.close()

    st = open_test_store(path / "store")
    after = _index(st)
    on_disk = set(maintainer(st).pack_listing())
    assert set(after) == on_disk  # the index names exactly the packs there
    surviving = {e.id for es in after.values() for e in es}
    assert kept <= surviving
    gone = set(before) - set(after)
    # a pack holding nothing a kept snapshot reaches is gone; one that survives whole
    # holds something reached
    for name, es in before.items():
        if not {e.id for e in es} & kept:
            assert name in gone
    # the record of this run (the last is the empty epoch record) names exactly the
    # packs gone, each with the entries the index gave it, in canonical bytes
    assert all(_canonical(r) for r in records)
    condemned = [serde.unpack(bytes(serde.unpack(r)["index"]))["packs"] for r in records]
    named = {p["id"]: [list(b) for b in p["blobs"]] for ps in condemned for p in ps}
    assert set(named) == gone
    for name in gone:
        assert named[name] == [[e.id, e.offset, e.length, e.raw_length]
                               for e in before[name]]
    assert rep.packs_removed == len(gone)
    v = verify(st, read_data=True)
    assert v.ok, v.problems
    st.close()
