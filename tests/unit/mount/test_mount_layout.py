"""The directories above a mount's snapshots (casbackup/mount/layout.py), for any list of
snapshots: every snapshot is under snapshots/, ids/, its host and each of its tags; names
are safe and unique; ``latest`` names the newest of its directory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.model.snapshot import Snapshot
from casbackup.mount import layout

_names = st.sampled_from(["", ".", "..", "a/b", "latest", "web1", "x\x00y", "é", "web1 "])
_snap = st.builds(
    lambda t, host, tags, i: Snapshot(t, host, "u", ["/p"], b"\0" * 32, tags=sorted(set(tags)),
                                      id=f"{i:064x}"),
    st.sampled_from([0.0, 1.5, 1_700_000_000.0, 1_700_000_000.9, 253402300799.0]),
    _names, st.lists(_names, max_size=3), st.integers(0, 2**256 - 1))


def _safe(name: bytes) -> bool:
    return bool(name) and b"/" not in name and b"\0" not in name and name not in (b".", b"..")


def _dirs(d: layout.Dir) -> list[layout.Dir]:
    out = [d]
    for c in d.dirs.values():
        out += _dirs(c)
    return out


@settings(max_examples=300)
@given(st.lists(_snap, max_size=12, unique_by=lambda s: s.id))
def test_every_snapshot_is_shown_under_safe_unique_names(snaps: list[Snapshot]) -> None:
    root = layout.build(snaps)
    assert sorted(root.dirs) == sorted(layout.TOP)
    for d in _dirs(root):
        names = [*d.dirs, *d.snaps, *d.links]
        assert len(names) == len(set(names))  # unique in each directory
        assert all(_safe(n) for n in names)
        assert layout.LATEST not in d.snaps
        for target in d.links.values():
            assert target in d.snaps  # a relative link to a sibling
    top = root.dirs
    ids = {s.id for s in snaps}
    assert {s.id for s in top[b"snapshots"].snaps.values()} == ids
    assert {s.id for s in top[b"ids"].snaps.values()} == ids
    for name, s in top[b"ids"].snaps.items():
        assert s.id.encode().startswith(name) and len(name) in (8, 64)
    assert sum(len(h.snaps) for h in top[b"hosts"].dirs.values()) == len(snaps)
    for s in snaps:
        assert s in top[b"hosts"].dirs[layout.safe_name(s.hostname)].snaps.values()
        for t in s.tags:
            assert s in top[b"tags"].dirs[layout.safe_name(t)].snaps.values()
    for d in _dirs(root):
        if d.snaps and d is not top[b"ids"]:
            newest = max(d.snaps.values(), key=lambda s: (s.time, s.id))
            assert d.snaps[d.links[layout.LATEST]] is newest
        else:
            assert layout.LATEST not in d.links


def test_names_are_utc_times_and_ties_are_numbered() -> None:
    a = Snapshot(1_700_000_000.2, "h", "u", [], b"\0" * 32, id="a" * 64)
    b = Snapshot(1_700_000_000.7, "h", "u", [], b"\0" * 32, id="b" * 64)
    snaps = layout.build([b, a]).dirs[b"snapshots"]
    assert snaps.snaps == {b"2023-11-14T22:13:20Z": a, b"2023-11-14T22:13:20Z-1": b}
    assert snaps.links == {b"latest": b"2023-11-14T22:13:20Z-1"}


def test_empty_store_has_the_top_directories_only() -> None:
    root = layout.build([])
    assert all(not d.dirs and not d.snaps and not d.links for d in root.dirs.values())
