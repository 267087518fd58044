"""The one snapshot resolver (``ops/snapsel.py``, issue #13 point 2): on random lists of
snapshots, ``pick`` agrees with a plain reading of restic's rules — ``latest`` is the
newest accepted snapshot, an id prefix names exactly one snapshot which must be
accepted — and every failure is the documented error class (exit 2 or exit 4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casbackup.errors import NothingMatched, SnapshotNotFound
from casbackup.ids import is_id_prefix
from casbackup.model.snapshot import Snapshot
from casbackup.ops.snapsel import SnapshotFilter, pick, split_ref

HOSTS = ("a", "b", "c")
TAGS = ("x", "y", "z")
PATHS = ("/p", "/q")


@st.composite
def snapshots(draw: st.DrawFn) -> list[Snapshot]:
    n = draw(st.integers(0, 8))
    ids = draw(st.lists(st.text("0123456789abcdef", min_size=64, max_size=64),
                        min_size=n, max_size=n, unique=True))
    out = []
    for i, sid in enumerate(ids):
        s = Snapshot(time=float(i), hostname=draw(st.sampled_from(HOSTS)), username="u",
                     paths=draw(st.lists(st.sampled_from(PATHS), min_size=1, unique=True)),
                     tree=b"\0" * 32, tags=draw(st.lists(st.sampled_from(TAGS), unique=True)))
        s.id = sid
        out.append(s)
    return out


filters = st.builds(
    SnapshotFilter.of,
    st.lists(st.sampled_from(HOSTS), max_size=2),
    st.lists(st.lists(st.sampled_from(TAGS), min_size=1, max_size=2).map(",".join),
             max_size=2),
    st.lists(st.sampled_from(PATHS + ("/p/",)), max_size=2))


def _accepts(f: SnapshotFilter, s: Snapshot) -> bool:  # the rules, read plainly
    host_ok = not f.hosts or s.hostname in f.hosts
    tag_ok = not f.tags or any(all(t in s.tags for t in g) for g in f.tags)
    path_ok = all(p.rstrip("/") in s.paths for p in f.paths)
    return host_ok and tag_ok and path_ok


@given(snapshots(), filters)
def test_latest_is_the_newest_accepted(snaps: list[Snapshot], f: SnapshotFilter) -> None:
    want = [s for s in snaps if _accepts(f, s)]
    assert [s for s in snaps if f.match(s)] == want
    if want:
        assert pick(snaps, "latest", f) is want[-1]
    else:
        err = NothingMatched if f.active() and snaps else SnapshotNotFound
        with pytest.raises(err):
            pick(snaps, "latest", f)


@given(snapshots(), filters, st.integers(4, 64), st.data())
def test_a_prefix_names_one_accepted_snapshot(snaps: list[Snapshot], f: SnapshotFilter,
                                              size: int, data: st.DataObject) -> None:
    if not snaps:
        return
    target = data.draw(st.sampled_from(snaps))
    ref = target.id[:size]
    hits = [s for s in snaps if s.id.startswith(ref)]
    if len(hits) > 1:
        with pytest.raises(SnapshotNotFound, match="ambiguous"):
            pick(snaps, ref, f)
    elif _accepts(f, target):
        assert pick(snaps, ref.upper(), f) is target
    else:
        with pytest.raises(NothingMatched, match=f"snapshot {target.id[:8]} does not match"):
            pick(snaps, ref, f)


@pytest.mark.parametrize("ref", ["abc", "zzzz", "latestx", "", "a" * 65, "12 34"])
def test_what_is_not_a_reference(ref: str) -> None:
    assert not is_id_prefix(ref)
    with pytest.raises(SnapshotNotFound, match="not a hex id prefix of 4\\+ digits"):
        pick([], ref)


def test_filter_describes_itself_as_given_and_splits_refs() -> None:
    f = SnapshotFilter.of(["h"], ["one,nope,one", " ", "b"], ["/x/"])
    assert f.describe() == "--host h --tag one,nope --tag b --path /x"
    assert not SnapshotFilter.of([], [","], [])
    assert split_ref("latest:/a:b") == ("latest", "/a:b")
    assert split_ref("abcd:") == ("abcd", "/") and split_ref("abcd") == ("abcd", None)
