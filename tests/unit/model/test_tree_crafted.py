"""Crafted tree blobs, built byte by byte with msgpack (duplicate keys, non-canonical int
widths, lying array headers, trailing bytes: shapes ``serde.pack`` of a Python value
cannot make), each one deviation from a valid tree the real encoder wrote: gc's
ids-only reader (``tree_ids``) and the full decoder (``Tree.decode``, what verify and
restore read with) give the same ids, or both refuse with the same line. If the fast
path took a tree the decoder refuses, gc would mark from a tree restore cannot read; if
its ids differed, gc could delete a blob a restore needs."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.errors import IntegrityError
from casbackup.model import tree as mt
from casbackup.model.tree import Node, Tree, tree_ids

TID = bytes(range(32))
A, B, S = b"\xaa" * 32, b"\xbb" * 32, b"\x5c" * 32


def mp(v: Any) -> bytes:
    return msgpack.packb(v, use_bin_type=True)  # type: ignore[no-any-return]


def rmap(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A msgpack map of already-encoded keys and values, duplicates and all."""
    n = len(pairs)
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    return head + b"".join(k + v for k, v in pairs)


def rarr(items: list[bytes], claim: int | None = None) -> bytes:
    n = len(items) if claim is None else claim
    head = bytes([0x90 | n]) if n < 16 else b"\xdd" + struct.pack(">I", n)
    return head + b"".join(items)


def node(m: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(mp(k), mp(v)) for k, v in m.items()]


# a valid tree by the real encoder: a directory, two files, a symlink, a fifo
GOOD_NODES = [Node(b"d", mt.DIR, mode=0o755, subtree=S),
              Node(b"f", mt.FILE, mode=0o644, size=9, content=[A, B]),
              Node(b"g", mt.FILE, mode=0o644, size=3, content=[B]),
              Node(b"l", mt.SYMLINK, target=b"f"),
              Node(b"p", mt.FIFO, mode=0o600)]
GOOD = Tree(list(GOOD_NODES)).encode()
MAPS = [n.to_map() for n in GOOD_NODES]


def tree(nodes: list[list[tuple[bytes, bytes]]], claim: int | None = None) -> bytes:
    return rmap([(mp("nodes"), rarr([rmap(n) for n in nodes], claim))])


def with_raw_node(i: int, raw: bytes) -> bytes:
    """GOOD with node I's encoding replaced by the raw msgpack RAW."""
    items = [rmap(node(m)) for m in MAPS]
    items[i] = raw
    return rmap([(mp("nodes"), rarr(items))])


def with_node(i: int, pairs: list[tuple[bytes, bytes]]) -> bytes:
    nodes = [node(m) for m in MAPS]
    nodes[i] = pairs
    return tree(nodes)


def changed(i: int, **fields: Any) -> bytes:
    return with_node(i, node({**MAPS[i], **fields}))


def raw_field(i: int, key: str, raw: bytes) -> bytes:
    """Node I with KEY's value replaced by the raw msgpack RAW (or added after the rest)."""
    pairs = node(MAPS[i])
    keys = [k for k, _ in pairs]
    if mp(key) in keys:
        pairs[keys.index(mp(key))] = (mp(key), raw)
    else:
        pairs.append((mp(key), raw))
    return with_node(i, pairs)


def names(*ns: bytes) -> bytes:
    return tree([node({**MAPS[4], "name": n}) for n in ns])


D, F, L = 0, 1, 3
F_PAIRS = rmap(node(MAPS[F]))[1:]  # node F's pairs without its map header
# (row id, crafted body, accepted?): one deviation from GOOD each
CRAFTED: list[tuple[str, bytes, bool]] = [
    ("the good tree", GOOD, True),
    ("rebuilt by hand", tree([node(m) for m in MAPS]), True),
    ("dup key type dir then file", with_node(D, node(MAPS[D]) + [(mp("type"), mp("file"))]),
     False),
    ("dup key type file then dir", with_node(F, node(MAPS[F]) + [(mp("type"), mp("dir"))]),
     False),
    ("dup key name", with_node(F, node(MAPS[F]) + [(mp("name"), mp(b"a"))]), False),
    ("dup key name, same", with_node(F, node(MAPS[F]) + [(mp("name"), mp(b"f"))]), True),
    ("dup key content, shorter", with_node(F, node(MAPS[F]) + [(mp("content"), mp([A]))]),
     True),
    ("dup key subtree", with_node(D, node(MAPS[D]) + [(mp("subtree"), mp(A))]), True),
    ("dup key subtree bad", with_node(D, node(MAPS[D]) + [(mp("subtree"), mp(b"x"))]), False),
    ("dup key nodes", rmap([(mp("nodes"), rarr([rmap(node(m)) for m in MAPS])),
                            (mp("nodes"), rarr([]))]), True),
    ("dup key nodes bad", rmap([(mp("nodes"), rarr([rmap(node(m)) for m in MAPS])),
                                (mp("nodes"), mp(7))]), False),
    ("subtree on a file", changed(F, subtree=S), False),
    ("subtree on a symlink", changed(L, subtree=S), False),
    ("content on a dir", changed(D, content=[A]), False),
    ("empty content on a dir", changed(D, content=[]), False),
    ("content on a symlink", changed(L, content=[A]), False),
    ("rdev on a dir", changed(D, rdev=0), False),
    ("target on a file", changed(F, target=b"x"), False),
    ("a dir without subtree", with_node(D, [p for p in node(MAPS[D]) if p[0] != mp("subtree")]),
     False),
    ("extra field", changed(F, future=[1, {"x": None}]), True),
    ("extra field, bytes key", with_node(F, node(MAPS[F]) + [(mp(b"content"), mp([S]))]), True),
    ("extra field, int key", with_node(F, node(MAPS[F]) + [(mp(1), mp(b"subtree"))]), True),
    ("extra top-level field", rmap([(mp("nodes"), rarr([rmap(node(m)) for m in MAPS])),
                                    (mp("more"), mp([S]))]), True),
    ("mode a string", changed(F, mode="644"), False),
    ("mode a bool", changed(F, mode=True), False),
    ("mode a float", changed(F, mode=420.0), False),
    ("mode nil", changed(F, mode=None), False),
    ("size negative", changed(F, size=-1), False),
    ("uid 2^32", changed(F, uid=2**32), False),
    ("user bytes", changed(F, user=b"root"), False),
    ("sparse an int", changed(F, sparse=1), False),
    ("mode as uint64", raw_field(F, "mode", b"\xcf" + struct.pack(">Q", 0o644)), True),
    ("mode as int8", raw_field(F, "mode", b"\xd0\x07"), True),
    ("mode as negative int64", raw_field(F, "mode", b"\xd3" + struct.pack(">q", -1)), False),
    ("size as uint64 max", raw_field(F, "size", b"\xcf" + b"\xff" * 8), False),
    ("name as str8", raw_field(F, "name", b"\xd9\x01f"), False),
    ("name as bin32", raw_field(F, "name", b"\xc6\x00\x00\x00\x01f"), True),
    ("subtree as bin32", raw_field(D, "subtree", b"\xc6" + struct.pack(">I", 32) + S), True),
    ("subtree a map", changed(D, subtree={"id": S}), False),
    ("subtree a list", changed(D, subtree=[S]), False),
    ("subtree a str", changed(D, subtree="x" * 32), False),
    ("subtree an ext", raw_field(D, "subtree", mp(msgpack.ExtType(1, S))), False),
    ("content entry a map", changed(F, content=[A, {"b": B}]), False),
    ("content a map", changed(F, content={A: B}), False),
    ("content entry a str", changed(F, content=[A, "b" * 32]), False),
    ("content a bin", changed(F, content=A + B), False),
    ("name a map", changed(F, name={"n": b"f"}), False),
    ("content id 31 bytes", changed(F, content=[A, B[:31]]), False),
    ("content id 33 bytes", changed(F, content=[A + b"\0", B]), False),
    ("subtree id 31 bytes", changed(D, subtree=S[:31]), False),
    ("subtree id 33 bytes", changed(D, subtree=S + b"\0"), False),
    ("huge nodes header", tree([node(m) for m in MAPS], claim=2**32 - 1), False),
    ("nodes header one short", tree([node(m) for m in MAPS], claim=4), False),
    ("nodes header one long", tree([node(m) for m in MAPS], claim=6), False),
    ("huge content header", raw_field(F, "content", b"\xdd\xff\xff\xff\xff" + mp(A)), False),
    ("huge node map header", with_raw_node(F, b"\xdf\xff\xff\xff\xff" + F_PAIRS), False),
    ("node map header one long", with_raw_node(F, bytes([0x81 + len(MAPS[F])]) + F_PAIRS),
     False),
    ("huge bin header", raw_field(D, "subtree", b"\xc6\xff\xff\xff\xff" + S), False),
    ("trailing byte", GOOD + b"\xc0", False),
    ("trailing tree", GOOD + GOOD, False),
    ("truncated by one", GOOD[:-1], False),
    ("names out of order", names(b"b", b"a"), False),
    ("names duplicated", names(b"a", b"a"), False),
    ("names out of order later", names(b"a", b"c", b"b"), False),
    ("name .", names(b"."), False),
    ("name ..", names(b".."), False),
    ("name a/b", names(b"a/b"), False),
    ("name /", names(b"/"), False),
    ("name empty", names(b""), False),
    ("name NUL", names(b"a\0"), False),
    ("name not UTF-8", names(b"\xff\xfe"), True),
    ("type a bin", changed(F, type=b"file"), False),
    ("type not UTF-8", raw_field(F, "type", b"\xa4fil\xff"), False),
    ("type unknown", changed(F, type="door"), False),
    ("type nil", changed(F, type=None), False),
    ("node a list", with_raw_node(L, rarr([mp(b"l"), mp("symlink"), mp(b"f")])), False),
    ("node nil", with_raw_node(L, mp(None)), False),
    ("map keyed by a list", with_node(F, node(MAPS[F]) + [(mp([1]), mp(1))]), False),
    ("map keyed by a map", with_node(F, node(MAPS[F]) + [(mp({}), mp(1))]), False),
    ("nodes a map", rmap([(mp("nodes"), mp({"f": MAPS[F]}))]), False),
    ("nodes under a bin key", rmap([(mp(b"nodes"), rarr([rmap(node(m)) for m in MAPS]))]),
     False),
    ("deeply nested", changed(F, future=[[[[[[[[]]]]]]]]), True),
]


def outcome(read: Any, data: bytes) -> tuple[list[bytes], list[bytes]] | str:
    try:
        return read(data)  # type: ignore[no-any-return]
    except IntegrityError as e:
        return f"IntegrityError: {e}"


def full(data: bytes) -> tuple[list[bytes], list[bytes]] | str:
    """What the full decoder says, as ids (or its error line)."""
    def ids(d: bytes) -> tuple[list[bytes], list[bytes]]:
        nodes = Tree.decode(d, TID).nodes
        return ([b for n in nodes for b in n.content or ()],
                [n.subtree for n in nodes if n.type == mt.DIR and n.subtree is not None])
    return outcome(ids, data)


def fast(data: bytes) -> tuple[list[bytes], list[bytes]] | str:
    return outcome(lambda d: tree_ids(d, TID), data)


def test_the_crafted_rows_are_distinct_and_start_from_the_encoders_bytes() -> None:
    assert CRAFTED[1][1] == GOOD  # the hand-built tree is byte for byte the encoder's
    assert len({row[1] for row in CRAFTED[1:]}) == len(CRAFTED) - 1
    assert full(GOOD) == ([A, B, B], [S])


@pytest.mark.parametrize(("what", "data", "accepted"), CRAFTED, ids=[r[0] for r in CRAFTED])
def test_a_crafted_tree_is_judged_alike_by_the_ids_reader_and_the_decoder(
        what: str, data: bytes, accepted: bool) -> None:
    want, got = full(data), fast(data)
    assert got == want, what
    assert (type(want) is not str) is accepted, (what, want)
    if type(want) is str:
        assert "\n" not in want and "tree 0001020304050607" in want, want


# ----- mutations of valid encoded trees --------------------------------------------------

ids32 = st.binary(min_size=32, max_size=32)
near_ids = st.binary(min_size=31, max_size=33)  # an id, or one byte short or long
vals = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=4),
    st.binary(max_size=4), near_ids, st.lists(near_ids, max_size=2),
    st.sampled_from(list(mt.TYPES)), st.sampled_from([b".", b"..", b"", b"a/b", b"a\0", b"~"]),
    st.sampled_from([{}, {"a": 1}, [[b"a", b""]], [S, {"x": S}], msgpack.ExtType(1, S)]))
keys = st.sampled_from([*mt._FIELDS, "future", b"content", 1])


@st.composite
def valid_tree(draw: st.DrawFn) -> list[dict[str, Any]]:
    ns = sorted(draw(st.lists(st.binary(min_size=1, max_size=3).filter(
        lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")),
        unique=True, max_size=6)))
    out = []
    for n in ns:
        t = draw(st.sampled_from(mt.TYPES))
        out.append(Node(n, t, mode=draw(st.integers(0, 0o7777)),
                        subtree=draw(ids32) if t == mt.DIR else None,
                        target=b"x" if t == mt.SYMLINK else None,
                        rdev=1 if t in (mt.CHARDEV, mt.BLOCKDEV) else None,
                        content=draw(st.lists(ids32, max_size=3)) if t == mt.FILE else None))
    return [n.to_map() for n in out]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    maps = draw(valid_tree())
    nodes = [node(m) for m in maps]
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["set", "dup", "drop", "raw", "swap", "node", "id"]))
        if not nodes:
            nodes.append(node({"name": b"a", "type": draw(st.sampled_from(mt.TYPES))}))
            continue
        i = draw(st.integers(0, len(nodes) - 1))
        if what == "set":  # a field set to another value (appended: a duplicate key)
            nodes[i] = nodes[i] + [(mp(draw(keys)), mp(draw(vals)))]
        elif what == "dup":  # a field of the node repeated with another value
            k, _ = draw(st.sampled_from(nodes[i] or [(mp("name"), b"")]))
            nodes[i] = nodes[i] + [(k, mp(draw(vals)))]
        elif what == "drop" and nodes[i]:
            nodes[i] = [p for j, p in enumerate(nodes[i])
                        if j != draw(st.integers(0, len(nodes[i]) - 1))]
        elif what == "raw" and nodes[i]:  # a value re-encoded at another width
            j = draw(st.integers(0, len(nodes[i]) - 1))
            k, v = nodes[i][j]
            if v[:1] in (b"\xc4",) and len(v) > 1:
                v = b"\xc6" + struct.pack(">I", v[1]) + v[2:]
            elif len(v) == 1 and v[0] < 0x80:
                v = b"\xcf" + struct.pack(">Q", v[0])
            nodes[i][j] = (k, v)
        elif what == "id":  # an id of the node one byte short or long
            m = maps[i] if i < len(maps) else {}
            if m.get("content"):
                c = list(m["content"])
                c[draw(st.integers(0, len(c) - 1))] = draw(near_ids)
                nodes[i] = nodes[i] + [(mp("content"), mp(c))]
            elif "subtree" in m:
                nodes[i] = nodes[i] + [(mp("subtree"), mp(draw(near_ids)))]
        elif what == "swap":
            j = draw(st.integers(0, len(nodes) - 1))
            nodes[i], nodes[j] = nodes[j], nodes[i]
        else:
            nodes.insert(i, draw(st.sampled_from(nodes)))
    data = tree(nodes)
    if draw(st.booleans()):  # then bytes flipped, cut or added
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(["flip", "cut", "add"]))
            pos = draw(st.integers(0, max(len(b) - 1, 0)))
            if op == "flip" and b:
                b[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del b[pos:pos + draw(st.integers(1, 4))]
            else:
                b[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        data = bytes(b)
    return data


@given(mutated())
@settings(max_examples=3000)
def test_a_mutated_tree_is_judged_alike_by_the_ids_reader_and_the_decoder(data: bytes
                                                                            ) -> None:
    assert fast(data) == full(data)


@given(valid_tree())
def test_the_mutations_start_from_trees_the_encoder_wrote(maps: list[dict[str, Any]]) -> None:
    data = tree([node(m) for m in maps])
    assert data == Tree([Node.from_map(m) for m in maps]).encode()
    assert type(fast(data)) is tuple
