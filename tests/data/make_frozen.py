"""Write the frozen format-v1 stores in tests/data/frozen-v1/ (run once, as root; never
in CI: the committed stores are the truth, and a rerun makes different bytes).

    PYTHONPATH=$PWD .venv/bin/python tests/data/make_frozen.py

Builds a source tree under /tmp/casbackup-frozen-v1 with every node type (file, empty
file, dir, symlink, fifo, char and block device, socket), hard links, a sparse file,
user.* xattrs, setuid/setgid/sticky modes, owners other than root, odd names (non-UTF-8
bytes, spaces, newline, unicode) and a multi-chunk file, with deterministic contents and
mtimes. Two stores (AES-256-GCM with a fast KDF, and unencrypted) with small chunker
and pack sizes take the same five snapshots of it through the CLI; the fourth is
forgotten and gc'd, so the consolidated index object lists what it ``supersedes``, and a
fifth backup follows. Each snapshot's source tree is recorded in manifest.json, every
snapshot is restored and compared with it, ``verify --read-data`` must pass, and the
``cat`` / ``snapshots`` outputs are pinned in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from casbackup.chunking import ChunkerParams
from casbackup.store import init_store
from tests.format.frozen import (
    DATA,
    MANIFEST,
    PASSPHRASE,
    SOURCE_ROOT,
    STORES,
    describe,
    describe_dir,
    sparse_paths,
)

SRC = SOURCE_ROOT / "src"
EXTRA = SOURCE_ROOT / "extra"
HOST = "frozen-host"
CHUNKER = ChunkerParams(min_size=16 << 10, avg_size=64 << 10, max_size=256 << 10)
PACK_SIZE = 128 << 10
KDF_N = 2**10
BASE_NS = 1_600_000_000_000_000_000

rng = random.Random("casbackup-frozen-v1")
version: dict[bytes, int] = {}  # relative path -> how often it was changed (its mtime)


def touch(rel: str | bytes) -> None:
    r = os.fsencode(rel)
    version[r] = version.get(r, 0) + 1
    parent = os.path.dirname(r) or b"."
    version[parent] = version.get(parent, 0) + 1


def set_times() -> None:
    """Every entry's mtime (and atime) from its path and change count: deterministic."""
    entries = []
    for dirpath, dirs, files in os.walk(os.fsencode(SOURCE_ROOT)):
        for n in dirs + files:
            entries.append(os.path.join(dirpath, n))
    entries += [os.fsencode(p) for p in (SRC, EXTRA) if p.exists()]
    for p in sorted(entries, key=len, reverse=True):
        rel = os.path.relpath(p, os.fsencode(SRC)) if p.startswith(os.fsencode(SRC)) else p
        h = hashlib.blake2b(rel + b"@%d" % version.get(rel, 0), digest_size=6).digest()
        ns = BASE_NS + int.from_bytes(h, "big") * 1000 + 123
        os.utime(p, ns=(ns, ns), follow_symlinks=False)


def build_tree() -> None:
    if SOURCE_ROOT.exists():
        shutil.rmtree(SOURCE_ROOT)
    SRC.mkdir(parents=True)
    os.chmod(SOURCE_ROOT, 0o755)
    s = os.fsencode(SRC)
    (SRC / "regular.txt").write_bytes(b"hello frozen world\n" * 200)
    (SRC / "empty").write_bytes(b"")
    multi = rng.randbytes(320 << 10)
    (SRC / "multi-chunk.bin").write_bytes(multi)
    (SRC / "dup-of-multi.bin").write_bytes(multi)
    (SRC / "with space.txt").write_bytes(b"a name with spaces\n")
    (SRC / "unicode-\u00fc-\u540d\u524d.txt").write_bytes("\u00fcnicode\n".encode())
    with open(s + b"/not-utf8-\xff\xfe.bin", "wb") as f:
        f.write(b"latin-1 name")
    (SRC / "new\nline").write_bytes(b"newline in name")
    (SRC / "sub" / "deeper").mkdir(parents=True)
    (SRC / "sub" / "deeper" / "leaf.txt").write_bytes(b"leaf\n")
    (SRC / "empty-dir").mkdir()
    os.symlink("regular.txt", SRC / "good-link")
    os.symlink("does/not/exist", SRC / "dangling")
    os.symlink(b"target-\xff\xfe", s + b"/link-non-utf8-target")
    (SRC / "hl-a").write_bytes(b"shared inode\n" * 50)
    os.link(SRC / "hl-a", SRC / "hl-b")
    os.link(SRC / "hl-a", SRC / "sub" / "hl-c")
    with open(SRC / "sparse.img", "wb") as f:  # 1 MiB, 4 KiB of data in the middle
        f.truncate(1 << 20)
        f.seek(512 << 10)
        f.write(b"x" * 4096)
    os.mkfifo(SRC / "fifo")
    os.mknod(SRC / "chardev", stat.S_IFCHR | 0o640, os.makedev(1, 3))
    os.mknod(SRC / "blockdev", stat.S_IFBLK | 0o600, os.makedev(7, 200))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(SRC / "sock"))
    sock.close()
    os.setxattr(SRC / "regular.txt", b"user.comment", b"\x00binary\xffvalue")
    os.setxattr(SRC / "regular.txt", b"user.another", b"second")
    os.setxattr(SRC / "sub", b"user.dir", b"on a directory")
    for name, mode in (("setuid", 0o4755), ("setgid", 0o2750), ("sticky-dir", 0o1777)):
        p = SRC / name
        if name.endswith("dir"):
            p.mkdir()
        else:
            p.write_bytes(b"#!/bin/sh\n")
        os.chmod(p, mode)
    (SRC / "owned").write_bytes(b"owned by someone else\n")
    os.chown(SRC / "owned", 1234, 5678)
    os.chown(SRC / "setgid", 0, 100)
    os.chown(SRC / "good-link", 1234, 5678, follow_symlinks=False)
    os.chmod(SRC / "regular.txt", 0o644)
    set_times()


def change_for_s2() -> None:
    with open(SRC / "regular.txt", "ab") as f:
        f.write(b"appended in s2\n")
    os.chmod(SRC / "regular.txt", 0o600)
    touch("regular.txt")
    (SRC / "with space.txt").unlink()
    touch("with space.txt")
    (SRC / "added-in-s2.txt").write_bytes(b"new in the second snapshot\n")
    touch("added-in-s2.txt")
    os.setxattr(SRC / "sub", b"user.dir", b"changed in s2")
    os.link(SRC / "hl-a", SRC / "sub" / "hl-d")
    touch("sub/hl-d")
    (SRC / "good-link").unlink()
    os.symlink("empty", SRC / "good-link")
    touch("good-link")
    set_times()


def change_for_s3() -> None:
    EXTRA.mkdir()
    (EXTRA / "notes.md").write_bytes(b"# a second source path\n")
    os.symlink("../src/regular.txt", EXTRA / "link-to-src")
    set_times()


def change_for_s4() -> None:
    (SRC / "doomed.bin").write_bytes(rng.randbytes(200 << 10))
    touch("doomed.bin")
    set_times()


def change_for_s5() -> None:
    (SRC / "doomed.bin").unlink()
    touch("doomed.bin")
    with open(SRC / "multi-chunk.bin", "ab") as f:
        f.write(rng.randbytes(40 << 10))
    touch("multi-chunk.bin")
    os.rename(SRC / "sub" / "deeper", SRC / "sub" / "deeper-renamed")
    touch("sub/deeper")
    touch("sub/deeper-renamed")
    set_times()


# (name, change, type, tags, paths)
STAGES: list[tuple[str, Any, str, list[str], list[Path]]] = [
    ("s1-initial", None, "full", ["daily"], [SRC]),
    ("s2-edited", change_for_s2, "incremental", ["daily", "frozen"], [SRC]),
    ("s3-two-paths", change_for_s3, "differential", ["weekly"], [SRC, EXTRA]),
    ("s4-forgotten", change_for_s4, "snapshot", ["doomed"], [SRC]),
    ("s5-after-gc", change_for_s5, "incremental", ["daily"], [SRC]),
]
FORGOTTEN = "s4-forgotten"


def cli(store: Path, *args: str, check: bool = True) -> str:
    env = dict(os.environ, CASBACKUP_PASSWORD=PASSPHRASE)
    p = subprocess.run([sys.executable, "-m", "casbackup", *args, "--store", str(store)],
                       env=env, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise SystemExit(f"casbackup {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p.stdout


def state_of(paths: list[Path]) -> dict[str, Any]:
    return {str(p): {"dir": describe_dir(p), "entries": describe(p, skip_sockets=True),
                     "with_sockets": len(describe(p)), "sparse": sparse_paths(p)}
            for p in paths}


def restore_and_compare(store: Path, snap: str, expected: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cli(store, "restore", snap, str(out))
        for path, want in expected.items():
            got = out / path.lstrip("/")
            if describe(got) != want["entries"] or describe_dir(got) != want["dir"]:
                raise SystemExit(f"restore of {snap} {path} differs from the source")
            if sparse_paths(got) != want["sparse"]:
                raise SystemExit(f"restore of {snap} {path}: sparse files differ")


def _shown(out: str) -> list[Any]:
    """The --json lines of a command without ``message_type`` (``cat``: its object)."""
    lines = [json.loads(x) for x in out.splitlines()]
    return [x["object"] if x["message_type"] == "object" else
            {k: v for k, v in x.items() if k != "message_type"} for x in lines]


def pinned_outputs(store: Path) -> dict[str, Any]:
    snaps = _shown(cli(store, "snapshots", "--json"))
    index_names = sorted(p.name for p in (store / "index").iterdir())

    def cat(*args: str) -> Any:
        (obj,) = _shown(cli(store, "cat", *args))
        return obj

    return {
        "snapshots": snaps,
        "config": cat("config"),
        "keys": cat("keys"),
        "index": {n: cat("index", n) for n in index_names},
        "snapshot": {s["id"]: cat("snapshot", s["id"]) for s in snaps},
        "root_tree": {s["id"]: cat("tree", s["tree"]) for s in snaps},
    }


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("make_frozen.py must run as root (devices, owners)")
    work = Path(tempfile.mkdtemp(prefix="frozen-make-"))
    stores = {name: work / name for name in STORES}
    for name, path in stores.items():
        init_store(str(path), None if name == "plain" else PASSPHRASE,
                   encryption="none" if name == "plain" else "repokey",
                   pack_size=PACK_SIZE, kdf_n=KDF_N, chunker=CHUNKER).close()
    build_tree()
    stages: list[dict[str, Any]] = []
    ids: dict[str, dict[str, str]] = {name: {} for name in STORES}
    for stage, change, btype, tags, paths in STAGES:
        if change is not None:
            change()
        stages.append({"name": stage, "type": btype, "tags": sorted(tags),
                       "paths": [str(p) for p in paths], "tree": state_of(paths)})
        for name, path in stores.items():
            tag_args = [a for t in tags for a in ("--tag", t)]
            out = cli(path, "backup", "--json", "--host", HOST, "--type", btype, *tag_args,
                      *map(str, paths))
            ids[name][stage] = json.loads(out.strip().splitlines()[-1])["snapshot_id"]  # summary
            if stage == FORGOTTEN:
                cli(path, "forget", ids[name][stage])
                cli(path, "gc")
    manifest: dict[str, Any] = {"format_version": 1, "host": HOST, "passphrase": PASSPHRASE,
                                "forgotten": FORGOTTEN, "stages": stages, "stores": {}}
    for name, path in stores.items():
        for d in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        cli(path, "verify", "--read-data")
        for st in stages:
            if st["name"] != FORGOTTEN:
                restore_and_compare(path, ids[name][st["name"]], st["tree"])
        manifest["stores"][name] = {"snapshot_ids": ids[name], **pinned_outputs(path)}
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir(parents=True)
    for name, path in stores.items():
        shutil.copytree(path, DATA / name, symlinks=True)
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(work)
    shutil.rmtree(SOURCE_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
