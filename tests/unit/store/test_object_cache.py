"""store/cache.py on a real directory: checked reads, LRU eviction of tree entries,
leftovers of crashes, and several processes sharing one cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.ids import object_name
from casbackup.store.cache import ObjectCache


def tree_id(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


def test_an_object_copy_is_returned_only_if_it_hashes_to_its_name(tmp_path: Path) -> None:
    c = ObjectCache(tmp_path)
    data = b"sealed index object bytes"
    name = object_name(data)
    assert c.get_object("index/", name) is None  # a miss
    c.put_object("index/", name, data)
    assert c.get_object("index/", name) == data
    path = tmp_path / "objects" / "index" / name
    path.write_bytes(data[:-1] + b"X")  # damaged on disk
    assert c.get_object("index/", name) is None
    assert not path.exists()  # dropped: the caller refetches and puts it again
    assert (c.stats.hits, c.stats.misses, c.stats.damaged) == (1, 1, 1)


def test_retain_drops_what_the_store_no_longer_lists(tmp_path: Path) -> None:
    c = ObjectCache(tmp_path)
    names = []
    for i in range(4):
        data = b"snapshot %d" % i
        names.append(object_name(data))
        c.put_object("snapshots/", names[-1], data)
    assert c.retain("snapshots/", names[1:3]) == 2
    assert sorted(p.name for p in (tmp_path / "objects" / "snapshots").iterdir()) == \
        sorted(names[1:3])
    assert c.retain("index/", []) == 0  # no such directory yet: nothing to do


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=25),
       touched=st.lists(st.integers(0, 24), max_size=10),
       limit=st.integers(0, 30000))
def test_trim_evicts_least_recently_used_trees_down_to_the_limit(
        sizes: list[int], touched: list[int], limit: int) -> None:
    with tempfile.TemporaryDirectory(prefix="objcache-") as root:
        check_trim(ObjectCache(Path(root), tree_limit=limit), sizes, touched, limit)


def check_trim(c: ObjectCache, sizes: list[int], touched: list[int], limit: int) -> None:
    base = time.time() - 10_000
    for i, size in enumerate(sizes):
        c.put_tree(tree_id(i), size, b"x" * size)
        os.utime(c._tree_path(tree_id(i)), (base + i, base + i))  # put in this order
    for i in touched:
        if i < len(sizes):
            assert c.get_tree(tree_id(i)) == (sizes[i], b"x" * sizes[i])  # now most recent
    used = {i: c._tree_path(tree_id(i)).stat().st_mtime for i in range(len(sizes))}
    c.trim()
    kept = {i for i in range(len(sizes)) if c._tree_path(tree_id(i)).exists()}
    total = sum(sizes[i] + 8 for i in kept)
    assert total <= limit
    evicted = set(range(len(sizes))) - kept
    if kept and evicted:  # every evicted entry was used no later than every kept one
        assert max(used[i] for i in evicted) <= min(used[i] for i in kept)
    # nothing more was evicted than needed: the next least recently used did not fit
    if evicted:
        newest = max(used[i] for i in evicted)
        assert any(total + sizes[i] + 8 > limit for i in evicted if used[i] == newest)
    assert c.stats.evicted == len(evicted)


def test_trim_runs_only_after_puts_and_removes_old_temporary_files(tmp_path: Path) -> None:
    c = ObjectCache(tmp_path, tree_limit=0)
    c.put_tree(tree_id(1), 3, b"abc")
    fresh = c._tree_path(tree_id(1)).parent / ".tmp-fresh"
    stale = c._tree_path(tree_id(1)).parent / ".tmp-stale"
    fresh.write_bytes(b"a crash's leftover, or a writer still at work")
    stale.write_bytes(b"a crash's leftover")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert ObjectCache(tmp_path, tree_limit=0).trim() == 0  # this process put nothing
    assert c.trim() == 1
    assert fresh.exists() and not stale.exists()


def test_a_damaged_tree_header_is_dropped(tmp_path: Path) -> None:
    c = ObjectCache(tmp_path)
    c.put_tree(tree_id(7), 5, b"hello")
    path = c._tree_path(tree_id(7))
    path.write_bytes((1 << 40).to_bytes(8, "little") + b"hello")  # an absurd length
    assert c.get_tree(tree_id(7)) is None and not path.exists()
    path.write_bytes(b"short")
    assert c.get_tree(tree_id(7)) is None and not path.exists()


def test_an_unusable_cache_directory_is_a_miss_not_a_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    c = ObjectCache(tmp_path / "file")
    data = b"x"
    c.put_object("index/", object_name(data), data)
    c.put_tree(tree_id(1), 1, b"x")
    assert c.get_object("index/", object_name(data)) is None
    assert c.get_tree(tree_id(1)) is None
    assert c.trim() == 0


WORKER = """
import sys
from pathlib import Path
from casbackup.ids import object_name
from casbackup.store.cache import ObjectCache
root, seed = Path(sys.argv[1]), int(sys.argv[2])
c = ObjectCache(root, tree_limit=40_000)
bad = 0
for round in range(60):
    for i in range(20):
        data = b"object %d " % i * (i + 1)
        got = c.get_object("index/", object_name(data))
        if got is None:
            c.put_object("index/", object_name(data), data)
        elif got != data:
            bad += 1
        tid = i.to_bytes(4, "big") * 8
        t = c.get_tree(tid)
        if t is None:
            c.put_tree(tid, i, bytes([i]) * (1000 + i))
        elif t != (i, bytes([i]) * (1000 + i)):
            bad += 1
    c.trim()
print(bad)
"""


def test_several_processes_share_one_cache(tmp_path: Path) -> None:
    """Four processes read, write and trim the same entries at once: no reader ever
    sees a partial or foreign entry, and no temporary file is left behind."""
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(n)],
                              stdout=subprocess.PIPE, text=True) for n in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert outs == ["0"] * 4
    assert list(tmp_path.rglob(".tmp-*")) == []
    c = ObjectCache(tmp_path, tree_limit=40_000)
    assert sum(p.stat().st_size for p in (tmp_path / "trees").rglob("*") if p.is_file()) \
        <= 40_000
    assert c.usage()["index"][0] == 20
