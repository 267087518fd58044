"""The frozen format-v1 stores (tests/data/frozen-v1) still read exactly as written.

Every test works on a copy. The CLI must list the pinned snapshots, print the pinned
``cat`` outputs, restore every snapshot to exactly the recorded tree and verify clean;
an independent reader written from docs/design.md (``specreader.py``) must find the
same trees, contents and index in the bytes. A later change of the format has to keep
passing these, or refuse the old version by number (pinned here too). The stores' bytes
themselves are pinned here, outside their folder, so that regenerating or editing them
(which would make every other test here pass against new bytes) fails.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import pytest

from casbackup.cli.output import backup_summary
from casbackup.model.snapshot import Summary
from tests.format.frozen import (
    PASSPHRASE,
    STORES,
    copy_store,
    describe,
    describe_dir,
    load_manifest,
    sparse_paths,
)
from tests.format.specreader import SpecStore
from tests.helpers import cli_env, json_lines, run_cli

M = load_manifest()
STAGES = {s["name"]: s for s in M["stages"]}
KEPT = [s["name"] for s in M["stages"] if s["name"] != M["forgotten"]]
_MODE_TYPES = {"file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket"}
FROZEN = Path(__file__).parents[1] / "data" / "frozen-v1"
# BLAKE2b-256 over every file of tests/data/frozen-v1 but its README (path, NUL, BLAKE2b of
# its bytes, in path order), as committed with the stores: never update it to follow
# changed bytes
FROZEN_FILES = 36
FROZEN_DIGEST = "db06ba9fc0fe25d5fa8fb15e2bd6992027632cfed6d6bed6d45ef994101a8ebe"


def cli(store: Path, *args: str, password: str = PASSPHRASE) -> subprocess.CompletedProcess[bytes]:
    return run_cli(*args, "--store", str(store), env=cli_env(CASBACKUP_PASSWORD=password))


def cli_json(store: Path, *args: str) -> Any:
    """What a command shows: ``cat``'s decoded object, or the other lines (docs/json.md)
    without their ``message_type``."""
    p = cli(store, *args)
    assert p.returncode == 0, p.stderr.decode()
    lines = json_lines(p.stdout)
    if args[0] == "cat":
        (obj,) = lines
        return obj["object"]
    return [{k: v for k, v in o.items() if k != "message_type"} for o in lines]


def as_shown(pinned: dict[str, Any]) -> dict[str, Any]:
    """A snapshot as the manifest pinned it (the first --json shape: ``type``, the
    snapshot's own summary keys) in the shape --json shows it now: the values come from
    the frozen store either way, only the names moved (docs/json.md)."""
    if "backup_type" in pinned:  # a manifest made since the contract: already so
        return pinned
    out = {k: v for k, v in pinned.items() if k != "type"}
    out["backup_type"] = pinned["type"]
    out["summary"] = backup_summary(Summary.from_map(pinned["summary"]))
    return out


def frozen_digest(root: Path) -> tuple[int, str]:
    h = hashlib.blake2b(digest_size=32)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p != root / "README.md")
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0"
                 + hashlib.blake2b(p.read_bytes()).digest())
    return len(files), h.hexdigest()


def test_the_frozen_bytes_never_change(tmp_path: Path) -> None:
    assert frozen_digest(FROZEN) == (FROZEN_FILES, FROZEN_DIGEST), (
        "tests/data/frozen-v1 changed: the frozen stores must never be regenerated or "
        "edited (see its README); add a new frozen store for a new format instead")
    # the digest sees one flipped byte in any file
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in STORES:
        copy_store(name, copy)
    (copy / "manifest.json").write_bytes((FROZEN / "manifest.json").read_bytes())
    assert frozen_digest(copy) == (FROZEN_FILES, FROZEN_DIGEST)
    pack = next(p for p in sorted((copy / "plain" / "packs").rglob("*")) if p.is_file())
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 1
    pack.write_bytes(bytes(data))
    assert frozen_digest(copy)[1] != FROZEN_DIGEST


@pytest.fixture(params=STORES)
def frozen(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    return request.param, copy_store(request.param, tmp_path)


def test_snapshot_list_is_pinned(frozen: tuple[str, Path]) -> None:
    name, store = frozen
    pinned = M["stores"][name]
    got = cli_json(store, "snapshots", "--json")
    assert got == [as_shown(s) for s in pinned["snapshots"]]
    by_id = {s["id"]: s for s in got}
    ids = pinned["snapshot_ids"]
    assert ids[M["forgotten"]] not in by_id
    assert [s["id"] for s in got] == [ids[n] for n in KEPT]  # oldest first
    for stage in KEPT:
        s, want = by_id[ids[stage]], STAGES[stage]
        assert (s["tags"], s["paths"], s["backup_type"], s["hostname"]) == (
            want["tags"], sorted(want["paths"]), want["type"], M["host"])


def test_cat_outputs_are_pinned(frozen: tuple[str, Path]) -> None:
    name, store = frozen
    pinned = M["stores"][name]
    assert cli_json(store, "cat", "config") == pinned["config"]
    # `cat keys` shows key objects' store_id since wave 2 (None for these format-1 keys):
    # an output field, not a format change; every pinned field is still there, unchanged
    keys = cli_json(store, "cat", "keys")
    assert [k.pop("store_id") for k in keys] == [None] * len(pinned["keys"])
    assert keys == pinned["keys"]
    assert sorted(p.name for p in (store / "index").iterdir()) == sorted(pinned["index"])
    for idx, want in pinned["index"].items():
        assert cli_json(store, "cat", "index", idx) == want
    supersedes = [v["supersedes"] for v in pinned["index"].values()]
    assert sorted(map(len, supersedes)) == [0, 4]  # gc consolidated four index objects
    for sid, want in pinned["snapshot"].items():
        assert cli_json(store, "cat", "snapshot", sid) == as_shown(want)
        assert cli_json(store, "cat", "tree", want["tree"]) == pinned["root_tree"][sid]


def test_verify_read_data_is_clean(frozen: tuple[str, Path]) -> None:
    _, store = frozen
    p = cli(store, "verify", "--read-data")
    assert p.returncode == 0, p.stderr.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="devices and owners restore only as root")
@pytest.mark.parametrize("stage", KEPT)
def test_restore_every_snapshot_exactly(frozen: tuple[str, Path], stage: str,
                                        tmp_path: Path) -> None:
    name, store = frozen
    sid = M["stores"][name]["snapshot_ids"][stage]
    out = tmp_path / "out"
    p = cli(store, "restore", sid, str(out))
    assert p.returncode == 0, p.stderr.decode()
    for path, want in STAGES[stage]["tree"].items():
        got = out / path.lstrip("/")
        assert describe(got, skip_sockets=True) == want["entries"]  # restore may skip them
        assert describe_dir(got) == want["dir"]
        assert sparse_paths(got) == want["sparse"]
    assert sorted(os.listdir(out / "tmp" / "casbackup-frozen-v1")) == sorted(
        Path(p).name for p in STAGES[stage]["paths"])


def _spec_entries(st: SpecStore,
                  tree_id: bytes) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The manifest's ``describe`` form of a stored tree, built from nodes alone (depth
    first in name order, as ``tree_state`` walks), the count including sockets, and the
    hex paths of the files marked sparse."""
    out: list[dict[str, Any]] = []
    sparse: list[str] = []
    first_of: dict[tuple[int, int], bytes] = {}
    count = 0

    def visit(tid: bytes, rel: bytes) -> None:
        nonlocal count
        for n in st.tree(tid):
            assert set(n) <= {"name", "type", "mode", "uid", "gid", "user", "group", "mtime_ns",
                              "ctime_ns", "inode", "device", "nlink", "size", "rdev", "content",
                              "subtree", "target", "xattrs", "sparse"}
            assert n["type"] in _MODE_TYPES
            path = rel + b"/" + n["name"] if rel else n["name"]
            count += 1
            if n["type"] == "socket":
                continue
            e: dict[str, Any] = {"path": path.hex(), "name": os.fsdecode(path), "type": n["type"],
                                 "mode": n["mode"], "uid": n["uid"], "gid": n["gid"]}
            if n["type"] != "dir":
                e["size"] = n["size"]
            if n["type"] != "symlink":
                e["mtime_ns"] = n["mtime_ns"]
            if n["type"] == "file":
                h = hashlib.blake2b()
                for bid in n.get("content", []):
                    h.update(st.blob(bid))
                e["digest"] = h.hexdigest()
                if n.get("sparse"):
                    sparse.append(path.hex())
                if n["nlink"] > 1:
                    first = first_of.setdefault((n["device"], n["inode"]), path)
                    e["link_of"] = first.hex()
            elif n["type"] == "symlink":
                e["target"] = n["target"].hex()
            elif n["type"] in ("chardev", "blockdev"):
                e["rdev"] = n["rdev"]
            if n.get("xattrs"):
                e["xattrs"] = [[k.hex(), v.hex()] for k, v in n["xattrs"]]
            out.append(e)
            if n["type"] == "dir":
                visit(n["subtree"], path)

    visit(tree_id, b"")
    return out, count, sorted(sparse)


def test_spec_reader_finds_the_recorded_trees(frozen: tuple[str, Path]) -> None:
    name, store = frozen
    st = SpecStore(store, PASSPHRASE if name == "encrypted" else None)
    snaps = dict(st.snapshots())
    ids = M["stores"][name]["snapshot_ids"]
    assert set(snaps) == {ids[s] for s in KEPT}
    for stage in KEPT:
        snap = snaps[ids[stage]]
        assert snap["version"] == 1
        assert list(snap) == ["version", "time", "hostname", "username", "paths", "tags",
                              "type", "parent", "tree", "original", "summary"]
        for path, want in STAGES[stage]["tree"].items():
            top = st.find(snap["tree"], path)
            assert {k: top[k] for k in ("mode", "uid", "gid", "mtime_ns")} == want["dir"]
            entries, count, sparse = _spec_entries(st, top["subtree"])
            assert entries == want["entries"]
            assert count == want["with_sockets"]
            assert sparse == want["sparse"]


def test_pack_headers_agree_with_the_index(frozen: tuple[str, Path]) -> None:
    name, store = frozen
    st = SpecStore(store, PASSPHRASE if name == "encrypted" else None)
    listed = {}
    for _idx, obj in st.index_objects():
        assert list(obj) == ["packs", "supersedes"]
        for p in obj["packs"]:
            assert list(p) == ["id", "kind", "size", "blobs"]
            listed[p["id"]] = [[p["kind"], *b] for b in p["blobs"]]
            assert (store / "packs" / p["id"][:2] / p["id"]).stat().st_size == p["size"]
    packs = dict(st.objects("packs"))
    assert set(packs) == set(listed)
    for pack in packs:
        assert st.pack_header(pack) == listed[pack]
    assert {k for _, k, *_ in st.blobs.values()} == {"data", "tree"}


def test_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    store = copy_store("encrypted", tmp_path)
    p = cli(store, "snapshots", password="not-the-passphrase")
    assert p.returncode == 12  # wrong password, as restic
    assert b"wrong password" in p.stderr


def test_newer_format_version_is_refused(frozen: tuple[str, Path]) -> None:
    _, store = frozen
    cfg = msgpack.unpackb((store / "config").read_bytes(), raw=False)
    cfg["format_version"] = 2
    (store / "config").write_bytes(msgpack.packb(cfg, use_bin_type=True))
    p = cli(store, "snapshots")
    assert p.returncode != 0
    assert b"format version 2 is not supported" in p.stderr
