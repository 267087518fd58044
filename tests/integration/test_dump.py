"""dump (issue #14 point 5) through the real CLI against real stores: a directory's tar
extracts with GNU ``tar -x --xattrs`` into exactly the tree ``restore`` makes (contents,
modes, owners, ns mtimes, symlinks, hard links, xattrs, FIFOs, devices) and holds the same
members as GNU tar's own PAX archive of that tree; zip round trip; a file's bytes; a 1 GiB
file streamed with a peak RSS far below its size; crafted names never become members;
paths not in the snapshot, and selection with latest/--host/--tag/SNAP:PATH."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from casbackup import serde
from casbackup.crypto.codec import DATA, TREE
from casbackup.model.snapshot import Snapshot
from casbackup.model.tree import DIR, FILE, Node, Tree
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from tests.helpers import (
    assert_same_tree,
    cli_env,
    make_store,
    open_test_store,
    restored_root,
    run_cli,
    tree_state,
)
from tests.integration.test_roundtrip import build_exotic_tree

IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def exotic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(store, source, the tree restore made of it)."""
    tmp = tmp_path_factory.mktemp("dump")
    src = tmp / "src"
    build_exotic_tree(src)
    st = make_store(tmp / "store")
    backup(st, [str(src)], BackupOptions())
    st.close()
    st = open_test_store(tmp / "store")
    restore(st, "latest", str(tmp / "restored"))
    st.close()
    return tmp / "store", src, restored_root(tmp / "restored", src)


def _dump(store: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    r = run_cli("dump", "--store", str(store), *args)
    assert r.returncode == 0, r.stderr
    return r


def _members(data: bytes) -> dict[str, tuple[Any, ...]]:
    """A tar's members: type, mode, owner, size, mtime (us), link, xattrs, device, data
    digest; a hard link group is named by its sorted member names."""
    out: dict[str, tuple[Any, ...]] = {}
    groups: dict[str, list[str]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar:
            name = m.name.removeprefix("./").rstrip("/")
            if name in ("", "."):
                continue
            xa = sorted((k, v) for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr."))
            body = tar.extractfile(m) if m.isreg() else None
            digest = hashlib.blake2b(body.read()).hexdigest() if body is not None else None
            kind = tarfile.REGTYPE if m.islnk() else m.type
            link = m.linkname.removeprefix("./") if m.islnk() else None
            if link is not None:
                groups.setdefault(link, [link]).append(name)
            out[name] = (kind, m.mode, m.uid, m.gid, m.uname, m.gname, round(m.mtime * 1e6),
                         m.linkname if m.issym() else None, xa, m.devmajor if m.isdev() else
                         None, m.devminor if m.isdev() else None, digest, link)
    for first, names in groups.items():  # every member of a group: the first's content
        for n in names:
            kind, mode, uid, gid, un, gn, mt, _, xa, ma, mi, _, _ = out[n]
            out[n] = (kind, mode, uid, gid, un, gn, mt, None, xa, ma, mi, out[first][11],
                      tuple(sorted(names)))
    for n, v in out.items():  # a file not in a group of links is a group of one
        if v[12] is None:
            out[n] = (*v[:12], (n,))
    return out


def test_tar_extracts_to_the_restored_tree_and_matches_gnu_tar(
        exotic: tuple[Path, Path, Path], tmp_path: Path) -> None:
    store, src, restored = exotic
    _dump(store, f"latest:{src}", "/", "--target", str(tmp_path / "dump.tar"))
    ext = tmp_path / "ext"
    ext.mkdir()
    subprocess.run(["tar", "-x", "--xattrs", "--xattrs-include=*", "-f",
                    str(tmp_path / "dump.tar"), "-C", str(ext)], check=True)
    assert_same_tree(restored, ext)
    gnu = subprocess.run(["tar", "-c", "--format=pax", "--xattrs", "--sort=name",
                          "-C", str(restored), "."], check=True, capture_output=True).stdout
    ours = (tmp_path / "dump.tar").read_bytes()
    mine, theirs = _members(ours), _members(gnu)
    assert sorted(mine) == sorted(theirs)
    for name in mine:
        assert mine[name] == theirs[name], name
    # and the same archive on stdout, with names under the snapshot's root without SNAP:PATH
    r = _dump(store, "latest", str(src))
    rel = str(src).lstrip("/")
    assert {f"{rel}/{n}" for n in mine} | {rel} == set(
        m.rstrip("/") for m in _members(r.stdout))


def test_a_file_is_its_bytes(exotic: tuple[Path, Path, Path]) -> None:
    store, src, _ = exotic
    for name in ("large.bin", "regular.txt", "empty", "sparse.img"):
        r = _dump(store, "latest", str(src / name))
        assert r.stdout == (src / name).read_bytes(), name
    r = _dump(store, f"latest:{src}/sub", "hl-c")
    assert r.stdout == (src / "hl-a").read_bytes()


def test_zip_round_trip(exotic: tuple[Path, Path, Path], tmp_path: Path) -> None:
    store, src, restored = exotic
    r = _dump(store, f"latest:{src}", "--archive", "zip", "--target", str(tmp_path / "d.zip"))
    assert b"d.zip" in r.stdout
    skipped = {line.split(" left out")[0].removeprefix("casbackup: warning: ")
               for line in r.stderr.decode().splitlines()}
    specials = {"fifo"} | ({"chardev", "blockdev"} if IS_ROOT else set())
    assert skipped == {f"{src}/{n}" for n in specials} | {f"{src}/not-utf8-\\xff\\xfe.bin"}
    with zipfile.ZipFile(tmp_path / "d.zip") as z:
        infos = {i.filename.rstrip("/"): i for i in z.infolist()}
        state = {k.decode(): v for k, v in tree_state(restored).items()
                 if k.isascii() or _utf8(k)}
        assert set(infos) == set(state) - specials
        for name, info in infos.items():
            kind, mode, *_, content, _ = state[name]
            assert info.external_attr >> 16 == kind | mode, name
            if stat.S_ISREG(kind):
                assert hashlib.blake2b(z.read(info)).hexdigest() == content[0], name
            elif stat.S_ISLNK(kind):
                assert z.read(info) == content, name
    if shutil.which("unzip"):
        out = tmp_path / "unz"
        subprocess.run(["unzip", "-q", str(tmp_path / "d.zip"), "-d", str(out)], check=True)
        assert (out / "large.bin").read_bytes() == (src / "large.bin").read_bytes()
        assert os.readlink(out / "good-link") == "regular.txt"
        assert (out / "sub" / "hl-c").read_bytes() == (src / "hl-a").read_bytes()
        assert os.stat(out / "setuid").st_mtime == int(os.stat(src / "setuid").st_mtime)


def _utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# Runs its arguments and reports their peak RSS: a process forked from pytest would count
# pytest's own RSS (maxrss survives fork and exec), one forked from this small one does not.
_RSS_OF = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
           "_, status, use = os.wait4(p.pid, 0); sys.stderr.write(f'{use.ru_maxrss}\\n'); "
           "sys.exit(os.waitstatus_to_exitcode(status))")


def _peak_rss_of(args: list[str], env: dict[str, str]) -> tuple[int, str, int]:
    """Run ARGS, hashing its stdout as it streams: (peak RSS bytes, digest, length)."""
    p = subprocess.Popen([sys.executable, "-c", _RSS_OF, *args], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h, n = hashlib.blake2b(), 0
    assert p.stdout is not None and p.stderr is not None
    while b := p.stdout.read(1 << 20):
        h.update(b)
        n += len(b)
    err = p.stderr.read()
    assert p.wait() == 0, err
    return int(err.split()[-1]) * 1024, h.hexdigest(), n


def test_a_1gib_file_streams_with_bounded_memory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    size = 1 << 30
    with open(src / "big.img", "wb") as f:  # sparse, with random data every 64 MiB
        for off in range(0, size, 64 << 20):
            f.seek(off)
            f.write(os.urandom(3 << 20))
        f.truncate(size)
    st = make_store(tmp_path / "store", encryption="none")
    backup(st, [str(src)], BackupOptions())
    st.close()
    h = hashlib.blake2b()
    with open(src / "big.img", "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    base = [sys.executable, "-m", "casbackup", "dump", "--store", str(tmp_path / "store")]
    rss, digest, n = _peak_rss_of([*base, "latest", str(src / "big.img")], cli_env())
    assert (digest, n) == (h.hexdigest(), size)
    assert rss < 160 << 20, f"peak RSS {rss >> 20} MiB for a 1 GiB file"
    rss, _, n = _peak_rss_of([*base, f"latest:{src}", "/"], cli_env())
    assert n > size and rss < 160 << 20, f"peak RSS {rss >> 20} MiB for a 1 GiB tar member"


def _crafted(tmp_path: Path, name: bytes) -> Path:
    """A store whose snapshot's /d lists a sound file and a node named NAME."""
    path = tmp_path / "store"
    st = make_store(path, encryption="none")
    data = st.add_blob(DATA, b"x").id
    ok: dict[str, Any] = {"name": b"ok", "type": FILE, "size": 1, "content": [data]}
    bad: dict[str, Any] = {"name": name, "type": FILE, "size": 1, "content": [data]}
    maps = sorted([ok, bad], key=lambda m: m["name"])
    sub = st.add_blob(TREE, serde.pack({"nodes": maps})).id
    root = st.add_blob(TREE, Tree([Node(b"d", DIR, mode=0o755, subtree=sub)]).encode()).id
    st.save_snapshot(Snapshot(1.0, "h", "u", ["/d"], root, type="full"))
    st.close()
    return path


@pytest.mark.parametrize("name", [b"..", b".", b"../../etc/passwd", b"/etc/passwd", b"",
                                  b"a\0b"])
@pytest.mark.parametrize("archive", ["tar", "zip"])
def test_crafted_names_never_become_members(tmp_path: Path, name: bytes, archive: str) -> None:
    store = _crafted(tmp_path, name)
    target = tmp_path / "out"
    r = run_cli("dump", "--store", str(store), "latest", "/", "-a", archive,
                "--target", str(target))
    assert r.returncode == 13, r.stderr
    assert b"Traceback" not in r.stderr and r.stderr.count(b"\n") == 1
    assert not target.exists()  # the partial archive is removed
    r = run_cli("dump", "--store", str(store), "latest", "/", "-a", archive)
    assert r.returncode == 13
    if archive == "tar" and r.stdout:
        with tarfile.open(fileobj=io.BytesIO(r.stdout + bytes(1024)), mode="r:") as tar:
            for m in tar:
                assert not m.name.startswith("/") and ".." not in m.name.split("/")


def test_paths_not_in_the_snapshot_and_non_files(exotic: tuple[Path, Path, Path]) -> None:
    store, src, _ = exotic
    for path, words in ((f"{src}/nope", f"{src}/nope is not in snapshot"),
                        (f"{src}/regular.txt/x", f"({src}/regular.txt is a file)"),
                        (f"{src}/no/x", f"(it has no {src}/no)"),
                        (f"{src}/good-link", "is a symlink"),
                        (f"{src}/fifo", "is a fifo")):
        r = run_cli("dump", "--store", str(store), "latest", path)
        assert r.returncode == 2 and words in r.stderr.decode(), (path, r.stderr)
        assert r.stdout == b"" and r.stderr.count(b"\n") == 1
    r = run_cli("dump", "--store", str(store), "latest", "/", "--archive", "rar")
    assert r.returncode == 2 and b"--archive rar" in r.stderr


def test_latest_narrowed_by_host_tag_and_path(tmp_path: Path) -> None:
    store, src = tmp_path / "store", tmp_path / "src"
    src.mkdir()
    assert run_cli("init", "--store", str(store)).returncode == 0
    for content, args in ((b"one", ["--host", "a", "--tag", "t"]), (b"two", ["--host", "b"]),
                          (b"three", ["--host", "a"])):
        (src / "f").write_bytes(content)
        assert run_cli("backup", "--store", str(store), str(src), *args).returncode == 0
    f = str(src / "f")
    assert _dump(store, "latest", f).stdout == b"three"
    assert _dump(store, "latest", f, "--host", "b").stdout == b"two"
    assert _dump(store, "latest", f, "--tag", "t").stdout == b"one"
    assert _dump(store, "latest", f, "--path", str(src), "--host", "b").stdout == b"two"
    assert _dump(store, f"latest:{src}", "f", "--host", "b").stdout == b"two"
    r = run_cli("dump", "--store", str(store), "latest", f, "--host", "c")
    assert r.returncode == 4 and b"no snapshot matches --host c" in r.stderr


def test_a_link_whose_first_member_is_left_out_is_a_file(tmp_path: Path) -> None:
    """tar cannot name an xattr that is not UTF-8: that member is left out (a warning)
    and the next link of its inode becomes the file, not a link to a missing member."""
    st = make_store(tmp_path / "store", encryption="none")
    data = st.add_blob(DATA, b"shared").id

    def linked(name: bytes, **kw: Any) -> Node:
        return Node(name, FILE, mode=0o644, size=6, content=[data], device=1, inode=7,
                    nlink=3, **kw)
    sub = st.add_blob(TREE, Tree([linked(b"a", xattrs={b"user.\xff": b"v"}), linked(b"b"),
                                  linked(b"c")]).encode()).id
    root = st.add_blob(TREE, Tree([Node(b"d", DIR, mode=0o755, subtree=sub)]).encode()).id
    st.save_snapshot(Snapshot(1.0, "h", "u", ["/d"], root, type="full"))
    st.close()
    r = _dump(tmp_path / "store", "latest:/d")
    assert r.stderr.decode().startswith("casbackup: warning: /d/a left out of the tar")
    with tarfile.open(fileobj=io.BytesIO(r.stdout), mode="r:") as tar:
        members = tar.getmembers()
        assert [(m.name, m.type, m.linkname) for m in members] == [
            ("b", tarfile.REGTYPE, ""), ("c", tarfile.LNKTYPE, "b")]
        body = tar.extractfile(members[0])
        assert body is not None and body.read() == b"shared"
