"""A hostile store: someone who holds the key (a compromised client) or can write an
unencrypted store rewrites its index objects, snapshots and trees to claim what no real
object holds -- an entry of 2^40 bytes, an offset past its pack's end, a pack size that
lies, a few KiB of zstd that expand to millions of entries, a zstd frame whose header
claims 2^40 bytes, a snapshot whose tree is a data blob, a tree claiming 10^6 nodes.

Every command that reads such an object (ls, restore, verify, gc, stats, find, dump,
backup's index load and the compact index build behind them) exits 13 with one line
``casbackup: …`` naming the object (find: after one warning for the tree it could not
search): no traceback, no MemoryError, no hang. The commands run
as real processes under a 2 GiB address-space limit, so an allocation sized by a hostile
claim shows as a MemoryError instead of swapping the machine. A command that does not read
the object (``snapshots`` does not read the index) still works.
"""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from casbackup import serde
from casbackup.crypto.codec import DATA, INDEX, SNAPSHOT, TREE
from casbackup.ids import object_name
from casbackup.model.snapshot import Snapshot
from casbackup.store import Store
from tests.helpers import cli_env, make_store, open_test_store

AS_LIMIT = 2 << 30  # bytes of address space for each command


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one backup of three 30 kB files (two packs: data and tree)."""
    root = tmp_path_factory.mktemp("hostile-base")
    src = root / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(os.urandom(30_000))
    make_store(root / "store").close()
    r = _run(root / "store", "backup", str(src))
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture
def store(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base, tmp_path / "c", symlinks=True)
    return tmp_path / "c" / "store"


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _run(store: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "casbackup", *args, "--store", str(store)],
                          env=cli_env(), capture_output=True, timeout=240, preexec_fn=_limit)


def _rewrite_index(store: Path, change: Callable[[dict[str, Any]], bytes | None]) -> None:
    """Replace every index object by CHANGE(its map) (a map changed in place, or the
    plaintext to seal), sealed with the store's key under its new name."""
    st = open_test_store(store)
    try:
        for info in list(st.backend.list("index/")):
            m = serde.unpack(st.codec.unseal(INDEX, st.backend.get(info.key)))
            if m["packs"][0]["kind"] != "data":
                m["packs"].reverse()  # the data pack first (packs of one object: any order)
            plain = change(m)
            sealed = st.codec.seal(INDEX, serde.pack(m) if plain is None else plain)
            st.backend.put(f"index/{object_name(sealed)}", sealed)
            st.backend.delete(info.key)
    finally:
        st.close()


def _data_pack(m: dict[str, Any]) -> dict[str, Any]:
    (p,) = [p for p in m["packs"] if p["kind"] == "data"]
    return p  # type: ignore[no-any-return]


def _huge_length(m: dict[str, Any]) -> None:
    _data_pack(m)["blobs"][0][2] = 2**40


def _huge_offset(m: dict[str, Any]) -> None:
    _data_pack(m)["blobs"][0][1] = 2**40


def _huge_raw_length(m: dict[str, Any]) -> None:
    _data_pack(m)["blobs"][0][3] = 2**40


def _past_the_end(m: dict[str, Any]) -> None:
    p = _data_pack(m)
    p["blobs"][0][1] = p["size"] - 10


def _size_lies(m: dict[str, Any]) -> None:
    """The pack claims 2^40 bytes, so an entry at 10^9 fits the claim but not the pack."""
    p = _data_pack(m)
    p["size"] = 2**40
    for e in p["blobs"]:
        e[1] += 10**9


def _bomb(m: dict[str, Any]) -> bytes:
    """10^6 copies of one entry: about 45 MB of msgpack that zstd stores in a few KiB."""
    p = _data_pack(m)
    p["blobs"] = [p["blobs"][0]] * 10**6
    return serde.pack(m)


def _claims_a_billion(m: dict[str, Any]) -> bytes:
    """An array header claiming 10^9 entries, with three behind it."""
    p = _data_pack(m)
    rows = b"".join(serde.pack(e) for e in p["blobs"][:3])
    p["blobs"] = []
    plain = serde.pack(m)
    empty = b"\xa5blobs\x90"
    assert plain.count(empty) == 1
    return plain.replace(empty, b"\xa5blobs\xdd" + struct.pack(">I", 10**9) + rows)


INDEX_ATTACKS = {"entry of 2^40 bytes": _huge_length, "offset 2^40": _huge_offset,
                 "raw length 2^40": _huge_raw_length, "offset past the pack's end":
                 _past_the_end, "pack size lies": _size_lies, "zstd bomb of 10^6 entries":
                 _bomb, "10^9 entries claimed": _claims_a_billion}


# attacks run against every reading command; the others against two (one decoder serves all)
EVERY_COMMAND = ("entry of 2^40 bytes", "zstd bomb of 10^6 entries")


def _one_line_13(r: subprocess.CompletedProcess[bytes], what: str) -> str:
    err = r.stderr.decode()
    assert r.returncode == 13, (what, r.returncode, err)
    assert "Traceback" not in err and "MemoryError" not in err, (what, err)
    lines = err.strip().splitlines()
    # one error line; find also warns once per tree it could not search, then sums up
    errors = [ln for ln in lines if not ln.startswith("casbackup: warning: ")]
    assert len(errors) == 1 and errors[0].startswith("casbackup: "), (what, err)
    assert len(lines) <= 2, (what, err)
    return errors[0]


def _commands(base: Path, tmp: Path) -> dict[str, list[str]]:
    return {"ls": ["ls", "-R", "latest"], "restore": ["restore", "latest", str(tmp / "r")],
            "verify --read-data": ["verify", "--read-data"], "gc": ["gc"],
            "backup": ["backup", str(base / "src" / "f1")], "stats": ["stats"],
            "find": ["find", "f*"],
            "dump": ["dump", "latest", f"{base / 'src' / 'f0'}", "--target", str(tmp / "d")]}


@pytest.mark.parametrize("attack", INDEX_ATTACKS)
def test_a_hostile_index_fails_every_reader_with_one_line(
        base: Path, store: Path, tmp_path: Path, attack: str) -> None:
    _rewrite_index(store, INDEX_ATTACKS[attack])  # type: ignore[arg-type]
    r = _run(store, "snapshots")  # reads no index object
    assert r.returncode == 0, r.stderr
    commands = _commands(base, tmp_path)
    if attack == "pack size lies":  # only commands reading the moved blob see it
        commands = {k: commands[k] for k in ("restore", "verify --read-data", "dump")}
    elif attack not in EVERY_COMMAND:  # the same check guards them all: two suffice
        commands = {k: commands[k] for k in ("restore", "gc")}
    for what, args in commands.items():
        line = _one_line_13(_run(store, *args), f"{attack}: {what}")
        if what != "verify --read-data":  # verify's line counts problems; stdout names them
            assert ("index/" in line or "index " in line or "packs/" in line), line
    assert not (tmp_path / "d").exists()


def _bomb_frame(claim: int) -> bytes:
    """A zstd frame whose header declares CLAIM bytes of content, holding one RLE block of
    100 zero bytes: what a hostile writer makes in 17 bytes."""
    header = struct.pack("<IB", 0xFD2FB528, 0xE0) + struct.pack("<Q", claim)  # single segment
    block = (1 | (1 << 1) | (100 << 3)).to_bytes(3, "little") + b"\0"  # last, RLE, 100
    return header + block


def _seal(st: Store, kind: str, plain_frame: bytes) -> bytes:
    body = b"\x01" + plain_frame  # the zstd tag (crypto/compress.py)
    aead = st.codec._aead  # noqa: SLF001 -- the attacker seals by hand
    return body if aead is None else aead.seal(body, f"casbackup:{kind}".encode())


def test_a_frame_claiming_2_40_bytes_allocates_nothing(store: Path) -> None:
    """In a snapshot object (read without a length): listed as damaged and skipped, as
    any damaged snapshot is; gc refuses with one line naming it."""
    st = open_test_store(store)
    sealed = _seal(st, SNAPSHOT, _bomb_frame(2**40))
    name = object_name(sealed)
    st.backend.put(f"snapshots/{name}", sealed)
    st.close()
    r = _run(store, "snapshots")
    assert r.returncode == 0 and f"snapshots/{name} is damaged" in r.stderr.decode(), r.stderr
    assert b"frame declares 1099511627776 bytes" in r.stderr
    line = _one_line_13(_run(store, "gc"), "gc")
    assert f"snapshots/{name}" in line


def _snapshot_of(st: Store, tree: bytes) -> str:
    return st.save_snapshot(Snapshot(time.time() + 60, "h", "u", ["/x"], tree, type="full"))


TREE_ATTACKS: dict[str, Callable[[Store], bytes]] = {
    "a data blob": lambda st: st.add_blob(DATA, b"not a tree\n" * 100).id,
    "10^6 claimed nodes": lambda st: st.add_blob(
        TREE, b"\x81\xa5nodes\xdd" + struct.pack(">I", 10**6) + b"\xc0" * 5).id,
    "a frame claiming 2^40 bytes": lambda st: _tree_with_frame(st),
}


def _tree_with_frame(st: Store) -> bytes:
    """A tree whose index entry and frame both claim 2^32 - 1 bytes (the largest an
    entry may give) and whose frame holds 100."""
    import hashlib

    from casbackup.store.index import PackInfo
    from casbackup.store.pack import PackEntry, encode_tail

    sealed = _seal(st, TREE, _bomb_frame(2**32 - 1))
    tree_id = hashlib.sha256(b"made up").digest()
    entry = PackEntry(TREE, tree_id, 0, len(sealed), 2**32 - 1)
    pack = sealed + encode_tail(st.codec, [entry])
    name = object_name(pack)
    st.backend.put(f"packs/{name[:2]}/{name}", pack)
    st.write_index([PackInfo(name, TREE, len(pack), [entry])])
    return tree_id


@pytest.mark.parametrize("attack", TREE_ATTACKS)
def test_a_snapshot_with_a_hostile_tree_fails_its_readers_with_one_line(
        store: Path, tmp_path: Path, attack: str) -> None:
    st = open_test_store(store)
    snap = _snapshot_of(st, TREE_ATTACKS[attack](st))
    st.close()
    every = [["ls", snap], ["restore", snap, str(tmp_path / "r")], ["stats", snap],
             ["find", "--snapshot", snap, "*"], ["gc"]]
    for args in every if attack == "a data blob" else every[1::3]:
        line = _one_line_13(_run(store, *args), f"{attack}: {args[0]}")
        assert "tree" in line, line
    r = _run(store, "verify")
    assert r.returncode == 13 and b"Traceback" not in r.stderr, r.stderr
    assert snap[:8] in r.stdout.decode(), r.stdout
