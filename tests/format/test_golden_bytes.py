"""Golden bytes of format v1: every encoder's output for fixed inputs, and decoding of
pinned stored bytes where encoding is random (nonces, salts).

A change of field order, of an integer's msgpack width, of the pack trailer, the tag
byte, the AEAD layout or its associated data fails one of these. The expected values
were produced by the code of the commit that added this file; the spec is
docs/design.md §3–§7. If one fails, the format changed: bump ``format_version`` and
keep reading v1 (tests/format/test_frozen_store.py), do not update the bytes.
"""

from __future__ import annotations

import struct

import blake3
import msgpack
import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup import serde
from casbackup.chunking import ChunkerParams
from casbackup.crypto import keys
from casbackup.crypto.codec import (
    DATA,
    GC_RECORD,
    HEADER,
    INDEX,
    KINDS,
    LOCK,
    SNAPSHOT,
    TREE,
    Codec,
)
from casbackup.errors import IntegrityError, WrongPassword
from casbackup.ids import object_name
from casbackup.model.snapshot import Snapshot, Summary
from casbackup.model.tree import Node, Tree, scan_tree
from casbackup.scratch import Scratch
from casbackup.store.config import StoreConfig
from casbackup.store.index import PackInfo, decode_index, encode_index
from casbackup.store.pack import PackEntry, finish_pack, parse_header

ID_KEY = bytes(range(32))
ENC_KEY = bytes(range(32, 64))
SEED = 0x1234567890ABCDEF
TEXT = b"the quick brown fox jumps over the lazy dog\n" * 100
PLAIN = Codec(ID_KEY, None, "none")
AES = Codec(ID_KEY, ENC_KEY, "aes-256-gcm")
CHACHA = Codec(ID_KEY, ENC_KEY, "chacha20-poly1305")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


# ----------------------------------------------------------------------------- ids


def test_blob_ids_are_keyed_blake3_and_names_plain_blake3() -> None:
    want = "6da54495d8152f2bcba87bd7282df70901cdb66b4448ed5f4c7bd2852b8b5532"
    assert PLAIN.blob_id(b"abc").hex() == want
    assert blake3.blake3(b"abc", key=ID_KEY).hexdigest() == want
    assert object_name(b"abc") == (
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")


# ----------------------------------------------------------------------------- sealed body


def test_kind_names_are_the_associated_data() -> None:
    # "gc" (condemnation records, design §8) was added in wave 2; the six v1 kinds keep
    # their names, so everything a v1 store holds still opens
    assert KINDS == (DATA, TREE, HEADER, INDEX, SNAPSHOT, LOCK, GC_RECORD)
    assert KINDS == ("data", "tree", "header", "index", "snapshot", "lock", "gc")


@pytest.mark.parametrize("data", [b"", b"short", bytes(range(63)), b"x" * 63])
def test_raw_body_is_tag_zero_then_the_bytes(data: bytes) -> None:
    assert PLAIN.seal(DATA, data) == b"\x00" + data
    assert PLAIN.unseal(DATA, b"\x00" + data) == data


def test_compressed_body_is_tag_one_then_a_zstd_frame() -> None:
    sealed = PLAIN.seal(DATA, TEXT)
    assert sealed[:1] == b"\x01" and sealed[1:5] == ZSTD_MAGIC
    assert zstandard.ZstdDecompressor().decompress(sealed[1:]) == TEXT
    pinned = h("0128b52ffd603010ad0100c40274686520717569636b2062726f776e20666f78206a756d707320"
               "6f76657220746865206c617a7920646f670a01000c88d7ab32")
    assert PLAIN.unseal(DATA, pinned, len(TEXT)) == TEXT


def test_incompressible_body_is_stored_raw() -> None:
    data = blake3.blake3(b"seed").digest(length=200_000)
    assert PLAIN.seal(DATA, data) == b"\x00" + data


AES_DATA = h("532eed4c207398034462cdd7172e662651c7435226782a858bf81735f9f67d4656bf4f397d204d"
             "3d6f6175bb")
AES_TREE_ZSTD = h("2f21fdac7346be4eb780fdf7f45e26f08c4ed7117df6c46ee3866c8ffaacba897836cd6b7b7a"
                  "b6e234ce112a6852c5d89b9b94bd8036feb9e2b848d4bb43eecbb500b3be1e9c000d40dc14f8"
                  "1ad7fab0178ee2a254589301fc1bf26d")
CHACHA_DATA = h("374d011d0a72c0c32f610321a5eaba19d3d28e54916eadc51468f95f60357cbd0832434de50a"
                "d10d6f822da1")


@pytest.mark.parametrize(("codec", "cls", "sealed", "kind", "plain"), [
    (AES, AESGCM, AES_DATA, DATA, b"short plaintext"),
    (AES, AESGCM, AES_TREE_ZSTD, TREE, TEXT),
    (CHACHA, ChaCha20Poly1305, CHACHA_DATA, DATA, b"short plaintext"),
], ids=["aes-raw", "aes-zstd", "chacha-raw"])
def test_pinned_sealed_bytes_unseal(codec: Codec, cls: type[AESGCM] | type[ChaCha20Poly1305],
                                    sealed: bytes, kind: str, plain: bytes) -> None:
    assert codec.unseal(kind, sealed) == plain
    # layout: nonce(12) ‖ AEAD(enc_key, nonce, tag ‖ payload, "casbackup:" + kind)
    body = cls(ENC_KEY).decrypt(sealed[:12], sealed[12:], b"casbackup:" + kind.encode())
    assert body[:1] == (b"\x00" if plain != TEXT else b"\x01")
    for other in KINDS:
        if other != kind:
            with pytest.raises(IntegrityError):
                codec.unseal(other, sealed)


@pytest.mark.parametrize("codec", [AES, CHACHA], ids=["aes", "chacha"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("data", [b"short plaintext", TEXT])
def test_encrypted_seal_layout(codec: Codec, kind: str, data: bytes) -> None:
    cls = AESGCM if codec is AES else ChaCha20Poly1305
    for sealed in (codec.seal(kind, data), bytes(codec.seal_into(kind, data, Scratch()))):
        body = cls(ENC_KEY).decrypt(sealed[:12], sealed[12:], b"casbackup:" + kind.encode())
        assert body == PLAIN.seal(kind, data)
        assert len(sealed) == 12 + len(body) + 16


# ----------------------------------------------------------------------------- pack


PACK_NAME = "067db8443de247d0958c2d548baf5f5ee40a20e2fd3bc5e5c0038a6ed0d25cca"
PACK = h("""
00666972737420626c6f62 007365636f6e6420626c6f622c2061206c6974746c65206c6f6e676572
009295a464617461c420c0e57e4e3ac360560c4bc88bc2c0b2f94bc2cba69894cd291378c15cf539a46600
0b0a95a464617461c420a760f0e35e2c3b46b03f8e94bd638ea7c502695fa79c86cec75b37f6e3127eb30b
1d1c 58000000 43425031""")


def _pack_entries() -> tuple[bytearray, list[PackEntry]]:
    buf, entries = bytearray(), []
    for d in (b"first blob", b"second blob, a little longer"):
        s = PLAIN.seal(DATA, d)
        entries.append(PackEntry(DATA, PLAIN.blob_id(d), len(buf), len(s), len(d)))
        buf += s
    return buf, entries


def test_pack_bytes_and_trailer() -> None:
    buf, entries = _pack_entries()
    name, data = finish_pack(PLAIN, buf, entries)
    assert bytes(data) == PACK and name == PACK_NAME == blake3.blake3(PACK).hexdigest()
    # trailer: u32 LE length of the sealed header, then b"CBP1"
    assert PACK[-4:] == b"CBP1"
    (hlen,) = struct.unpack("<I", PACK[-8:-4])
    assert hlen == 0x58
    header = PLAIN.unseal(HEADER, PACK[-8 - hlen:-8])
    assert serde.unpack(header) == [[e.kind, e.id, e.offset, e.length, e.raw_length]
                                    for e in entries]
    assert parse_header(PLAIN, PACK, PACK_NAME) == entries


def test_encrypted_pack_header_is_sealed_with_kind_header() -> None:
    buf, entries = _pack_entries()
    _, data = finish_pack(AES, bytearray(buf), entries)
    (hlen,) = struct.unpack("<I", bytes(data[-8:-4]))
    sealed = bytes(data[-8 - hlen:-8])
    assert bytes(data[-4:]) == b"CBP1"
    assert AES.unseal(HEADER, sealed) == PLAIN.unseal(HEADER, PACK[-8 - 0x58:-8])
    with pytest.raises(IntegrityError):
        AES.unseal(INDEX, sealed)


# ----------------------------------------------------------------------------- node and tree

NODE_ORDER = ["name", "type", "mode", "uid", "gid", "user", "group", "mtime_ns", "ctime_ns",
              "inode", "device", "nlink", "size", "rdev", "content", "subtree", "target",
              "xattrs", "sparse"]  # docs/design.md §7


def _file_node() -> Node:
    return Node(name=b"f\xffile", type="file", mode=0o4755, uid=1000, gid=100, user="alice",
                group="users", mtime_ns=1_700_000_000_123_456_789,
                ctime_ns=1_700_000_001_000_000_001, inode=123456, device=2049, nlink=2,
                size=300, content=[bytes(32), bytes([1]) * 32],
                xattrs={b"user.b": b"2", b"user.a": b"\x00\xff"}, sparse=True)


FILE_NODE = h("""
de0010a46e616d65c40566ff696c65a474797065a466696c65a46d6f6465cd09eda3756964cd03e8a3676964
64a475736572a5616c696365a567726f7570a57573657273a86d74696d655f6e73cf17979cfe3d85cd15a863
74696d655f6e73cf17979cfe71c4ca01a5696e6f6465ce0001e240a6646576696365cd0801a56e6c696e6b02
a473697a65cd012ca7636f6e74656e7492c42000000000000000000000000000000000000000000000000000
00000000000000c4200101010101010101010101010101010101010101010101010101010101010101a67861
747472739292c406757365722e61c40200ff92c406757365722e62c40132a6737061727365c3""")
DIR_NODE = h("""
8ca46e616d65c403646972a474797065a3646972a46d6f6465cd03ffa375696400a367696400a86d74696d65
5f6e7305a86374696d655f6e7306a5696e6f646507a664657669636508a56e6c696e6b03a473697a6500a773
756274726565c4200202020202020202020202020202020202020202020202020202020202020202""")
LINK_NODE = h("""
8ca46e616d65c4046c696e6ba474797065a773796d6c696e6ba46d6f6465cd01ffa375696400a367696400a8
6d74696d655f6e7301a86374696d655f6e7302a5696e6f646503a664657669636504a56e6c696e6b01a47369
7a6506a6746172676574c40274fe""")
DEV_NODE = h("""
8ca46e616d65c4046e756c6ca474797065a763686172646576a46d6f6465cd01b6a375696400a367696400a8
6d74696d655f6e7300a86374696d655f6e7300a5696e6f646500a664657669636500a56e6c696e6b01a47369
7a6500a472646576cd0103""")


def _other_nodes() -> list[Node]:
    return [
        Node(name=b"link", type="symlink", mode=0o777, mtime_ns=1, ctime_ns=2, inode=3,
             device=4, size=6, target=b"t\xfe"),
        Node(name=b"null", type="chardev", mode=0o666, rdev=259),
        Node(name=b"dir", type="dir", mode=0o1777, mtime_ns=5, ctime_ns=6, inode=7, device=8,
             nlink=3, subtree=bytes([2]) * 32),
    ]


def test_node_with_every_field_encodes_to_pinned_bytes_in_field_order() -> None:
    m = _file_node().to_map()
    assert list(m) == NODE_ORDER[:13] + ["content", "xattrs", "sparse"]
    assert m["xattrs"] == [[b"user.a", b"\x00\xff"], [b"user.b", b"2"]]  # sorted by name
    assert serde.pack(m) == FILE_NODE
    decoded = serde.unpack(FILE_NODE)
    assert [k for k in NODE_ORDER if k in decoded] == list(decoded)
    assert Node.from_map(decoded) == _file_node()


def test_tree_encodes_nodes_sorted_by_raw_name() -> None:
    want = b"\x81\xa5nodes\x94" + DIR_NODE + FILE_NODE + LINK_NODE + DEV_NODE
    assert Tree([_file_node(), *_other_nodes()]).encode() == want
    assert Tree.decode(want).nodes == sorted([_file_node(), *_other_nodes()],
                                             key=lambda n: n.name)


# ----------------------------------------------------------------------------- index


INDEX_MAP = h("""
82a57061636b739184a26964d940616261626162616261626162616261626162616261626162616261626162
61626162616261626162616261626162616261626162616261626162616261626162a46b696e64a464617461
a473697a65cd1092a5626c6f62739294c4200303030303030303030303030303030303030303030303030303
03030303030300110f94c4200404040404040404040404040404040404040404040404040404040404040404
111e64aa7375706572736564657391d940636463646364636463646364636463646364636463646364636463
64636463646364636463646364636463646364636463646364636463646364636463646364""")


def test_index_map_bytes() -> None:
    pack = PackInfo("ab" * 32, DATA, 4242, [PackEntry(DATA, bytes([3]) * 32, 0, 17, 15),
                                            PackEntry(DATA, bytes([4]) * 32, 17, 30, 100)])
    assert encode_index([pack], ["cd" * 32]) == INDEX_MAP
    packs, supersedes = decode_index(INDEX_MAP)
    assert packs == [pack] and supersedes == ["cd" * 32]
    m = serde.unpack(INDEX_MAP)
    assert list(m) == ["packs", "supersedes"] and list(m["packs"][0]) == [
        "id", "kind", "size", "blobs"]


# ----------------------------------------------------------------------------- snapshot


SNAPSHOT_MAP = h("""
8ba776657273696f6e01a474696d65cb41d954fc40100000a8686f73746e616d65ab676f6c64656e2d686f73
74a8757365726e616d65ab676f6c64656e2d75736572a5706174687392a72f686f6d652f75a42f657463a474
61677392a161a162a474797065a466756c6ca6706172656e74d9406566656665666566656665666566656665
6665666566656665666566656665666566656665666566656665666566656665666566656665666566656665
666566a474726565c4200505050505050505050505050505050505050505050505050505050505050505a86f
726967696e616cc0a773756d6d6172798ca966696c65735f6e657701ad66696c65735f6368616e67656402af
66696c65735f756e6368616e67656403a46469727304aa62797465735f7265616405ab62797465735f616464
656406ac62797465735f73746f72656407ab626c6f62735f616464656408aa746f74616c5f73697a6509aa75
6e7265616461626c650ab36368616e6765645f647572696e675f726561640ba86475726174696f6ecb3ff800
0000000000""")


def _snapshot() -> Snapshot:
    return Snapshot(time=1_700_000_000.25, hostname="golden-host", username="golden-user",
                    paths=["/home/u", "/etc"], tree=bytes([5]) * 32, type="full",
                    tags=["b", "a"], parent="ef" * 32, original=None,
                    summary=Summary(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1.5))


def test_snapshot_map_bytes() -> None:
    assert _snapshot().encode() == SNAPSHOT_MAP
    m = serde.unpack(SNAPSHOT_MAP)
    assert list(m) == ["version", "time", "hostname", "username", "paths", "tags", "type",
                       "parent", "tree", "original", "summary"]
    assert list(m["summary"]) == ["files_new", "files_changed", "files_unchanged", "dirs",
                                  "bytes_read", "bytes_added", "bytes_stored", "blobs_added",
                                  "total_size", "unreadable", "changed_during_read", "duration"]
    got = Snapshot.decode(SNAPSHOT_MAP, "x")
    want = _snapshot()
    want.tags, want.id = ["a", "b"], "x"
    assert got == want


# ----------------------------------------------------------------------------- config


_CONFIG_HEAD = """
ae666f726d61745f76657273696f6e01a873746f72655f6964d920303031313232333334343535363637373838
3939616162626363646465656666a468617368ac626c616b65332d6b65796564ab636f6d7072657373696f6e
a47a737464b1636f6d7072657373696f6e5f6c6576656c03aa656e6372797074696f6e"""
_CONFIG_CHUNKER = """
a76368756e6b657284a9616c676f726974686dab6661737463646332303230a86d696e5f73697a65ce000400
00a86176675f73697a65ce00100000a86d61785f73697a65ce00800000a97061636b5f73697a65ce01000000"""
CONFIG_AES = h("88" + _CONFIG_HEAD + "ab6165732d3235362d67636d" + _CONFIG_CHUNKER)
CONFIG_NONE = h("8a" + _CONFIG_HEAD + "a46e6f6e65" + _CONFIG_CHUNKER + """
a669645f6b6579c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
ac6368756e6b65725f73656564cf1234567890abcdef""")


@pytest.mark.parametrize(("encryption", "id_key", "want"), [
    ("aes-256-gcm", None, CONFIG_AES), ("none", ID_KEY, CONFIG_NONE)])
def test_config_map_bytes(encryption: str, id_key: bytes | None, want: bytes) -> None:
    cfg = StoreConfig(store_id="00112233445566778899aabbccddeeff", encryption=encryption,
                      chunker=ChunkerParams(seed=SEED), id_key=id_key)
    assert cfg.encode() == want
    assert StoreConfig.decode(want) == (cfg if id_key else StoreConfig(
        store_id=cfg.store_id, encryption=encryption, chunker=ChunkerParams()))
    assert list(serde.unpack(want))[:8] == [
        "format_version", "store_id", "hash", "compression", "compression_level",
        "encryption", "chunker", "pack_size"]


# ----------------------------------------------------------------------------- key object


MASTER = h("""
83a7656e635f6b6579c420202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fa6
69645f6b6579c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fac636875
6e6b65725f73656564cf1234567890abcdef""")
KEY_OBJECT = h("""
8ba776657273696f6e01a36b6466a6736372797074a16ecd0400a17208a17001a473616c74c420a2ec829457
462b15d7808a0a38d4de7c0d8069eb1fe0fee034539b37a8c40723a6636970686572ab6165732d3235362d67
636da777726170706564c486862fc9c5411967a5c557cfa95c05094c9ccbe01af22c2ea1ff540f78d6492774
b247a6ff120ccd30fa31c1ed7e2dad1dc493f50c635e65c58da6e755b478f2e4c1c8cacc9a6adc2ab420372d
6ab59a3899a874fc774553a12e36d54c151b9812c5f0078a2fc889bc7d98429b6b4080e1e2e23161de50e266
696877dd0bb8098d2bb27864377ba763726561746564cb41dac3a4047f0dd1a8686f73746e616d65a2766da8
757365726e616d65a4726f6f74""")
KEY_FIELDS = ["version", "kdf", "n", "r", "p", "salt", "cipher", "wrapped", "created",
              "hostname", "username"]


def test_master_key_bytes() -> None:
    master = keys.MasterKey(ENC_KEY, ID_KEY, SEED)
    assert master.to_bytes() == MASTER
    assert keys.MasterKey.from_bytes(MASTER) == master


def test_pinned_key_object_unwraps() -> None:
    assert keys.unwrap(KEY_OBJECT, "golden passphrase") == keys.MasterKey(ENC_KEY, ID_KEY, SEED)
    with pytest.raises(WrongPassword):
        keys.unwrap(KEY_OBJECT, "another passphrase")
    d = serde.unpack(KEY_OBJECT)
    assert list(d) == KEY_FIELDS
    assert (d["version"], d["kdf"], d["n"], d["r"], d["p"], d["cipher"]) == (
        1, "scrypt", 1024, 8, 1, "aes-256-gcm")
    # wrapped = nonce(12) ‖ AES-256-GCM(scrypt(passphrase, salt), master, "casbackup-key-v1")
    kek = keys._kek("golden passphrase", d["salt"], 1024, 8, 1)
    w = d["wrapped"]
    assert AESGCM(kek).decrypt(w[:12], w[12:], b"casbackup-key-v1") == MASTER


def test_new_key_object_layout() -> None:
    master = keys.MasterKey(ENC_KEY, ID_KEY, SEED)
    data = keys.wrap(master, "pw", n=2**10)
    d = serde.unpack(data)
    assert list(d) == KEY_FIELDS
    assert len(d["salt"]) == 32 and len(d["wrapped"]) == 12 + len(MASTER) + 16
    assert keys.unwrap(data, "pw") == master


# ----------------------------------------------------------------------------- any node


def _spec_node_map(n: Node) -> dict[str, object]:
    """§7 written out: the fields in the documented order, absent ones omitted (``sparse``
    only when true, ``xattrs`` only when there are some, as sorted [name, value] pairs)."""
    m: dict[str, object] = {}
    for f in NODE_ORDER:
        v = getattr(n, f)
        if v is None or (f == "sparse" and not v) or (f == "xattrs" and not v):
            continue
        m[f] = [[k, v[k]] for k in sorted(v)] if f == "xattrs" else v
    return m


_ids = st.lists(st.binary(min_size=32, max_size=32), max_size=4)
_nodes = st.builds(
    Node,
    name=st.binary(min_size=1, max_size=40).filter(
        lambda b: b"\0" not in b and b"/" not in b and b not in (b".", b"..")),
    type=st.sampled_from(["file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket"]),
    mode=st.integers(0, 0o7777), uid=st.integers(0, 2**32 - 1), gid=st.integers(0, 2**32 - 1),
    user=st.none() | st.text(max_size=8), group=st.none() | st.text(max_size=8),
    mtime_ns=st.integers(-(2**63), 2**63 - 1), ctime_ns=st.integers(0, 2**63 - 1),
    inode=st.integers(0, 2**64 - 1), device=st.integers(0, 2**64 - 1),
    nlink=st.integers(0, 2**32), size=st.integers(0, 2**63),
    rdev=st.none() | st.integers(0, 2**64 - 1), content=st.none() | _ids,
    subtree=st.none() | st.binary(min_size=32, max_size=32),
    target=st.none() | st.binary(max_size=64),
    xattrs=st.none() | st.dictionaries(st.binary(min_size=1, max_size=12),
                                       st.binary(max_size=12), max_size=4),
    sparse=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_nodes, max_size=6, unique_by=lambda n: n.name))
def test_any_tree_encodes_as_the_spec_says(nodes: list[Node]) -> None:
    want = msgpack.packb({"nodes": [_spec_node_map(n) for n in sorted(nodes,
                                                                      key=lambda n: n.name)]},
                         use_bin_type=True)
    assert Tree(list(nodes)).encode() == want
    # decoding validates (design §7 reader rules): a tree the rules allow comes back
    # field for field; any other is refused with IntegrityError, never another exception
    if scan_tree(want)[1]:
        with pytest.raises(IntegrityError):
            Tree.decode(want)
        return
    back = Tree.decode(want).nodes
    assert [_spec_node_map(n) for n in back] == [_spec_node_map(n) for n in
                                                  sorted(nodes, key=lambda n: n.name)]
