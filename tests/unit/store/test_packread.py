"""The one pack reader (store/packread.py, issue #13 point 1).

``plan_reads`` on random packs: every wanted entry is read exactly once, in offset order;
a read never spans a gap larger than GAP nor holds more than CAP (unless one blob alone
is larger); two neighbouring reads could not have been one; with ``cover`` the reads tile
the pack from byte 0. ``Store.stream_blobs`` on real stores on disk (encrypted and not):
exactly the wanted blobs with their plaintexts, one backend read per planned range; a
damaged blob is yielded with its error while the others still come; an entry past the
pack's size is reported truncated without a read; ``whole=`` hashes every byte and
parses the header, and a flipped byte anywhere fails the hash.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.errors import IntegrityError
from casbackup.ids import DATA
from casbackup.store import PackEntry, Store, pack_key
from casbackup.store.packread import CAP, GAP, plan_reads
from tests.helpers import make_store


@st.composite
def packs(draw: st.DrawFn) -> tuple[list[PackEntry], list[PackEntry]]:
    """(all entries of a pack laid end to end with random holes, a random subset)."""
    sizes = draw(st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 2000)),
                          min_size=1, max_size=40))
    entries, pos = [], 0
    for i, (length, hole) in enumerate(sizes):
        entries.append(PackEntry(DATA, i.to_bytes(32, "big"), pos, length, length))
        pos += length + hole
    picks = draw(st.lists(st.booleans(), min_size=len(entries), max_size=len(entries)))
    return entries, [e for e, p in zip(entries, picks, strict=True) if p]


@settings(max_examples=300, deadline=None)
@given(packs(), st.integers(0, 4000), st.integers(1, 12000), st.booleans(),
       st.randoms(use_true_random=False))
def test_plan_reads(pack: tuple[list[PackEntry], list[PackEntry]], gap: int, cap: int,
                    cover: bool, rnd: random.Random) -> None:
    _, wanted = pack
    shuffled = list(wanted)
    rnd.shuffle(shuffled)
    reads = plan_reads(shuffled, gap, cap, cover)
    flat = [e for _, _, group in reads for e in group]
    assert flat == sorted(wanted, key=lambda e: e.offset)  # each once, in order
    for k, (start, end, group) in enumerate(reads):
        assert start <= group[0].offset and end == group[-1].offset + group[-1].length
        assert end - start <= cap or len(group) == 1
        if not cover:
            assert start == group[0].offset
            for a, b in zip(group, group[1:], strict=False):
                assert b.offset - (a.offset + a.length) <= gap
        else:
            assert start == (reads[k - 1][1] if k else 0)  # no byte skipped
        if k + 1 < len(reads):  # greedy: the next blob did not fit this read
            nxt = reads[k + 1][2][0]
            fits = (cover or nxt.offset - end <= gap) and nxt.offset + nxt.length - start <= cap
            assert not fits


def test_defaults_are_the_documented_ones() -> None:
    assert (GAP, CAP) == (256 * 1024, 4 << 20)


def _store_with_pack(tmp: Path, encryption: str,
                     n: int = 30) -> tuple[Store, str, dict[bytes, bytes]]:
    s = make_store(tmp / "store", encryption=encryption)
    rnd = random.Random(n)
    datas = {}
    for i in range(n):
        d = rnd.randbytes(rnd.randrange(1, 200_000)) if i % 3 else bytes(rnd.randrange(1, 5000))
        datas[s.add_blob(DATA, d).id] = d
    s.flush()
    (pack,) = s.index.packs  # one pack: well under pack_size
    return s, pack, datas


@pytest.mark.parametrize("encryption", ["repokey", "none"])
@settings(max_examples=15, deadline=None)
@given(picks=st.lists(st.booleans(), min_size=30, max_size=30))
def test_stream_yields_wanted_plaintexts_one_read_per_range(encryption: str,
                                                           picks: list[bool]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s, pack, datas = _store_with_pack(Path(tmp), encryption)
        entries = sorted(s.index.packs[pack].entries, key=lambda e: e.offset)
        wanted = [e for e, p in zip(entries, picks, strict=True) if p]
        reads: list[tuple[int, int]] = []
        real = s.read_pack_range_view

        def counting(p: str, off: int, n: int, scratch):  # type: ignore[no-untyped-def]
            reads.append((off, n))
            return real(p, off, n, scratch)
        s.read_pack_range_view = counting  # type: ignore[method-assign]
        got = {b.entry.id: bytes(b.checked()) for b in s.stream_blobs(pack, wanted)}
        assert got == {e.id: datas[e.id] for e in wanted}
        assert reads == [(a, b - a) for a, b, _ in plan_reads(wanted)]
        s.close()


def test_damaged_blob_is_an_error_the_rest_still_come(tmp_path: Path) -> None:
    s, pack, datas = _store_with_pack(tmp_path, "repokey")
    entries = sorted(s.index.packs[pack].entries, key=lambda e: e.offset)
    bad = entries[len(entries) // 2]
    path = tmp_path / "store" / pack_key(pack)
    raw = bytearray(path.read_bytes())
    raw[bad.offset + bad.length // 2] ^= 0x40
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    seen = []
    for b in s.stream_blobs(pack, entries):  # views: checked while they are valid
        seen.append(b.entry)
        if b.entry == bad:
            assert b.plain is None and isinstance(b.error, IntegrityError)
            with pytest.raises(IntegrityError, match=f"pack {pack[:16]}"):
                b.checked()
        else:
            assert b.error is None and bytes(b.checked()) == datas[b.entry.id]
    assert seen == entries
    stream = s.stream_blobs(pack, entries, whole=len(raw))
    assert sum(1 for b in stream if b.error) == 1
    end = stream.finish()
    assert not end.hash_ok and end.header == s.index.packs[pack].entries
    s.close()


def test_whole_hashes_and_parses_the_header(tmp_path: Path) -> None:
    s, pack, _ = _store_with_pack(tmp_path, "none")
    info = s.index.packs[pack]
    stream = s.stream_blobs(pack, info.entries, whole=info.size, unseal=False)
    assert all(b.plain is None and b.error is None for b in stream)
    end = stream.finish()
    assert end.hash_ok and end.header == info.entries and end.header_error is None
    # a byte flipped in the header: the hash fails and the header is damaged
    path = tmp_path / "store" / pack_key(pack)
    raw = bytearray(path.read_bytes())
    raw[-12] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    stream = s.stream_blobs(pack, info.entries, whole=info.size, unseal=False)
    list(stream)
    end = stream.finish()
    assert not end.hash_ok and end.header is None and end.header_error is not None
    s.close()


def test_entries_past_the_size_are_truncated_unread(tmp_path: Path) -> None:
    s, pack, datas = _store_with_pack(tmp_path, "repokey")
    entries = sorted(s.index.packs[pack].entries, key=lambda e: e.offset)
    cut = entries[-3].offset + 1  # the last three blobs reach past it
    reads: list[int] = []
    real = s.read_pack_range_view

    def counting(p: str, off: int, n: int, scratch):  # type: ignore[no-untyped-def]
        reads.append(off + n)
        return real(p, off, n, scratch)
    s.read_pack_range_view = counting  # type: ignore[method-assign]
    out = {b.entry.id: (b.error, None if b.plain is None else bytes(b.plain))
           for b in s.stream_blobs(pack, entries, size=cut)}
    assert len(out) == len(entries) and max(reads) <= cut
    for e in entries:
        err, plain = out[e.id]
        if e.offset + e.length > cut:
            assert plain is None and "truncated" in str(err)
        else:
            assert err is None and plain == datas[e.id]
    s.close()


def test_read_pack_header_matches_the_index(tmp_path: Path) -> None:
    s, pack, _ = _store_with_pack(tmp_path, "repokey")
    info = s.index.packs[pack]
    assert s.read_pack_header(pack, info.size) == info.entries
    with pytest.raises(IntegrityError, match="truncated"):
        s.read_pack_header(pack, 3)
    s.close()


def test_missing_pack_raises(tmp_path: Path) -> None:
    s, pack, _ = _store_with_pack(tmp_path, "none")
    entries = s.index.packs[pack].entries
    os.unlink(tmp_path / "store" / pack_key(pack))
    with pytest.raises(IntegrityError, match="missing"):
        list(s.stream_blobs(pack, entries))
    s.close()
