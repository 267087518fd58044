"""verify's streaming check of an index object (store/indexcheck.py) against the full
decoder (``decode_index_object``): every object the writer encodes is accepted with its
entry count; whatever the decoder refuses, the check refuses; and what the check accepts
the decoder reads with the same count -- over valid objects and the same objects with one
field replaced by a wrong value, bytes cut off or appended. (The check is stricter only
where Python's iteration lets the decoder take a string for an empty list.)"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup import serde
from casbackup.errors import IntegrityError
from casbackup.store import compactindex, indexruns
from casbackup.store.compactindex import CompactFile, columns_from_packs
from casbackup.store.index import decode_index_object
from casbackup.store.indexcheck import check_plain

_blob = st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**40),
                  st.integers(1, 2**31), st.integers(0, 2**31)).map(list)


@st.composite
def _pack(draw: st.DrawFn) -> dict:
    """A pack the writer could name: 64 hex digits, a pack kind, every blob inside it."""
    blobs = draw(st.lists(_blob, max_size=4))
    end = max((b[1] + b[2] for b in blobs), default=0)
    return {"id": draw(st.binary(min_size=32, max_size=32)).hex(),
            "kind": draw(st.sampled_from(["data", "tree"])),
            "size": end + draw(st.integers(0, 2**20)), "blobs": blobs}


_obj = st.fixed_dictionaries({"packs": st.lists(_pack(), max_size=3),
                              "supersedes": st.lists(st.text(max_size=3), max_size=2)})
_int = st.integers(-(2**63), 2**64 - 1)  # what msgpack can encode at all
_wrong = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=2), st.binary(max_size=33),
                   st.lists(_int, max_size=5),
                   st.dictionaries(st.text(max_size=1), _int, max_size=1))


def _same(data: bytes, valid: bool = False) -> None:
    try:
        packs, _, _ = decode_index_object(data)
    except IntegrityError:
        assert not valid
        with pytest.raises(IntegrityError):
            check_plain(data)
        return
    want = sum(len(p.entries) for p in packs)
    if valid:
        assert check_plain(data) == want
        return
    try:
        got = check_plain(data)
    except IntegrityError:
        return  # stricter than the decoder (see the docstring)
    assert got == want


@settings(max_examples=40, deadline=None)
@given(_obj, st.data())
def test_the_streaming_check_agrees_with_the_decoder(obj: dict, data: st.DataObject) -> None:
    raw = serde.pack(obj)
    _same(raw, valid=True)
    # one field replaced by a value of a wrong shape
    if obj["packs"]:
        p = data.draw(st.sampled_from(obj["packs"]))
        key = data.draw(st.sampled_from(sorted(p)))
        if key == "blobs" and p["blobs"] and data.draw(st.booleans()):
            b = data.draw(st.sampled_from(p["blobs"]))
            b[data.draw(st.integers(0, 3))] = data.draw(_wrong)
        else:
            p[key] = data.draw(_wrong)
        _same(serde.pack(obj))
    _same(serde.pack({"supersedes": []}))
    _same(serde.pack([obj]))
    cut = data.draw(st.integers(0, len(raw)))
    _same(raw[:cut])
    _same(raw + b"\x00")


def _records(f: CompactFile) -> list[tuple[bytes, str, str, int, int, int, int]]:
    """Every record of a run in file order, by value (pack numbers resolved)."""
    cols = f.columns()
    out = []
    for k in range(f.n):
        r = cols.records[k]
        name, kind, size = f.pack(int(r["pack"]))
        out.append((int(cols.prefixes[k]).to_bytes(8, "big") + bytes(r["rest"]), name, kind,
                    size, int(r["offset"]), int(r["length"]), int(r["raw"])))
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(_pack(), max_size=6), st.sampled_from([1, 2, 3, 1 << 17]), st.booleans(),
       st.data())
def test_the_streaming_run_equals_the_decoded_columns(
        packs: list[dict], window: int, repeat: bool, data: st.DataObject) -> None:
    """The compact build's streaming decode (``indexruns.object_run``, flushing a sorted
    run every WINDOW entries) holds exactly the records ``columns_from_packs`` makes of
    the full decoder's packs -- ids shared between packs, a pack named twice (its first
    entries kept), ties in their order -- and refuses what the decoder refuses."""
    if packs and repeat:  # a blob in two packs, and a pack named twice
        other = data.draw(st.sampled_from(packs))
        if other["blobs"] and packs[0]["blobs"]:
            packs[0]["blobs"][0][0] = other["blobs"][-1][0]
        packs.append(dict(data.draw(st.sampled_from(packs))))
    raw = serde.pack({"packs": packs, "supersedes": ["a" * 64], "exact": repeat})
    decoded, sup, exact = decode_index_object(raw, "x")
    want = columns_from_packs(["ab" * 32], [(p.name, p.kind, p.size, p.entries)
                                            for p in decoded])
    saved, indexruns.RUN_ENTRIES = indexruns.RUN_ENTRIES, window
    try:
        run, got_sup, got_exact = indexruns.object_run(raw, "ab" * 32)
    finally:
        indexruns.RUN_ENTRIES = saved
    with tempfile.TemporaryFile() as t:
        for part in compactindex._parts(want)[1]:
            t.write(part)
        t.flush()
        ref = CompactFile(Path("<ref>.cbx"), ["ab" * 32], anonymous=t)
        assert _records(run) == _records(ref)
        assert run.sources == ["ab" * 32] and got_sup == sup and got_exact == exact
        ref.close()
    run.close()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(IntegrityError):
        decode_index_object(raw[:cut])
    with pytest.raises(IntegrityError):
        indexruns.object_run(raw[:cut], "ab" * 32)
