"""Trees encode canonically (dedup of unchanged directories depends on it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from casbackup.model.snapshot import Snapshot
from casbackup.model.tree import DIR, FILE, SYMLINK, Node, Tree

names = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))


@given(st.lists(names, unique=True, max_size=20), st.randoms())
def test_tree_encoding_is_canonical_and_roundtrips(ns: list[bytes], rnd: object) -> None:
    nodes = [Node(n, FILE, mode=0o644, size=i, content=[bytes(32)], xattrs={b"user.b": b"2",
             b"user.a": b"1"}) for i, n in enumerate(ns)]
    shuffled = list(nodes)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = Tree(list(nodes)).encode(), Tree(shuffled).encode()
    assert a == b
    back = Tree.decode(a)
    assert [n.name for n in back.nodes] == sorted(ns)
    assert Tree(back.nodes).encode() == a


def test_node_kinds_and_non_utf8_survive() -> None:
    t = Tree([Node(b"\xff\xfename", SYMLINK, target=b"\x80target"),
              Node(b"dir\n", DIR, subtree=bytes(range(32)))])
    back = Tree.decode(t.encode())
    assert back.find(b"\xff\xfename").target == b"\x80target"  # type: ignore[union-attr]
    assert back.find(b"dir\n").subtree == bytes(range(32))  # type: ignore[union-attr]
    assert back.find(b"missing") is None


def test_snapshot_roundtrip() -> None:
    s = Snapshot(1.25, "host", "user", ["/a"], bytes(32), type="full", tags=["x"])
    back = Snapshot.decode(s.encode(), "id")
    assert (back.time, back.type, back.tags, back.tree, back.id) == (1.25, "full", ["x"],
                                                                     bytes(32), "id")


def test_decoded_nodes_equal_field_by_field_whichever_path_builds_them() -> None:
    """Node._of builds a plain map with Node(**m), any other (xattrs, a newer writer's
    field) field by field: both give the node that was encoded, every field equal."""
    plain = Node(name=b"a", type="file", mode=0o600, uid=7, gid=8, user="u", group="g",
              mtime_ns=-5, ctime_ns=9, inode=3, device=4, nlink=2, size=10,
              content=[b"\x01" * 32], sparse=True)
    other = Node(name=b"b", type="dir", subtree=b"\x02" * 32, xattrs={b"k": b"v"})
    bare = Node(name=b"c", type="fifo")
    back = Tree.decode(Tree([plain, other, bare]).encode()).nodes
    assert back == [plain, other, bare]
    assert back[0].xattrs is None and back[1].xattrs == {b"k": b"v"} and back[2].nlink == 1
