"""restore in place (issue #14 items 1, 2): --overwrite modes, --delete, --dry-run,
--strip-components, SNAP:PATH and --target /.

Real stores on disk, real trees. The property test builds random trees, backs them up,
restores them, mutates the restored tree at random (content, size, type changes, planted
symlinks and hard links to an outside area, FIFOs, read-only files, extra entries), then
restores in place with --delete: the result must be the snapshot exactly, and the outside
area unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.store import Store
from tests.helpers import cli_env, make_store, restored_root, run_cli, tree_state
from tests.integration.restore_env import make_outside, outside_state

NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
CONTENT = st.one_of(st.binary(max_size=64), st.integers(1, 300_000).map(
    lambda n: os.urandom(n)))


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> dict[str, object]:
    """A directory: name -> bytes (a file), a dict (a directory) or ("sym", target)."""
    out: dict[str, object] = {}
    for name in draw(st.lists(NAMES, unique=True, max_size=4)):
        kind = draw(st.sampled_from(["file", "file", "dir", "sym"] if depth < 3 else ["file"]))
        if kind == "file":
            out[name] = draw(CONTENT)
        elif kind == "dir":
            out[name] = draw(trees(depth + 1))
        else:
            out[name] = ("sym", draw(NAMES))
    return out


def build(root: Path, tree: dict[str, object]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, v in tree.items():
        p = root / name
        if isinstance(v, bytes):
            p.write_bytes(v)
        elif isinstance(v, dict):
            build(p, v)
        else:
            assert isinstance(v, tuple)
            os.symlink(str(v[1]), p)


MUTATIONS = ("rewrite", "rewrite-keep-mtime", "append", "truncate", "delete", "to-dir",
             "to-file", "symlink-out", "hardlink-out", "fifo", "read-only", "extra",
             "extra-dir", "touch")


def mutate(root: Path, outside: Path, picks: list[tuple[int, str]]) -> None:
    entries = sorted(p for p in root.rglob("*"))
    for k, what in picks:
        entries = sorted(p for p in root.rglob("*"))
        if not entries:
            return
        p = entries[k % len(entries)]
        if not os.path.lexists(p):
            continue
        is_dir = p.is_dir() and not p.is_symlink()
        is_file = p.is_file() and not p.is_symlink()
        if what == "extra":
            (p if is_dir else p.parent).joinpath("zz-extra").write_bytes(b"extra")
            continue
        if what == "extra-dir":
            d = (p if is_dir else p.parent) / "zz-extra-dir"
            if os.path.lexists(d):  # made by an earlier pick (and maybe turned to a file)
                continue
            d.mkdir()
            (d / "f").write_bytes(b"x")
            os.symlink(outside, d / "out")
            continue
        if what in ("rewrite", "rewrite-keep-mtime", "append", "truncate", "read-only",
                    "touch") and not is_file:
            continue
        st_ = os.lstat(p)
        if what == "rewrite":
            data = bytearray(p.read_bytes() or b"x")
            data[len(data) // 2] ^= 0xFF
            p.write_bytes(bytes(data))
        elif what == "rewrite-keep-mtime":  # only --overwrite always can see this one
            data = bytearray(p.read_bytes() or b"x")
            data[0] ^= 0x01
            p.write_bytes(bytes(data))
            os.utime(p, ns=(st_.st_atime_ns, st_.st_mtime_ns))
        elif what == "append":
            with open(p, "ab") as f:
                f.write(os.urandom(1000))
        elif what == "truncate":
            os.truncate(p, st_.st_size // 3)
        elif what == "touch":
            os.utime(p, ns=(1, 1))
        elif what == "read-only":
            data = bytearray(p.read_bytes() or b"x")
            data[-1] ^= 0x10
            p.write_bytes(bytes(data))
            os.chmod(p, 0o444)
        else:
            if is_dir:
                shutil.rmtree(p)
            else:
                p.unlink()
            if what == "to-dir":
                p.mkdir()
                (p / "inner").write_bytes(b"inner")
            elif what == "to-file":
                p.write_bytes(b"a file where something else was")
            elif what == "symlink-out":
                os.symlink(outside if is_dir else outside / "victim", p)
            elif what == "hardlink-out":
                os.link(outside / "victim", p)
            elif what == "fifo":
                os.mkfifo(p)


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("inplace")
    make_outside(base / "outside")
    return base


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=trees(), picks=st.lists(st.tuples(st.integers(0, 50), st.sampled_from(MUTATIONS)),
                                    max_size=6),
       mode=st.sampled_from(["always", "if-changed"]))
def test_restore_in_place_after_random_mutations_is_the_snapshot(
    area: Path, tree: dict[str, object], picks: list[tuple[int, str]], mode: str
) -> None:
    base = area / "ex"
    if base.exists():
        subprocess.run(["rm", "-rf", str(base)], check=True)
    src, target, outside = base / "src", base / "t", area / "outside"
    build(src, tree)
    st_ = make_store(base / "store", encryption="none")
    backup(st_, [str(src)], BackupOptions())
    expected = tree_state(src)
    restore(st_, "latest", str(target))
    root = restored_root(target, src)
    if mode == "if-changed":  # if-changed trusts size and mtime, as restic's does
        picks = [(k, w) for k, w in picks if w != "rewrite-keep-mtime"]
    mutate(root, outside, picks)
    before = outside_state(outside)
    res = restore(st_, "latest", str(target), overwrite=mode, delete=True)
    assert res.failed == []
    assert outside_state(outside) == before
    assert tree_state(root) == expected
    # and nothing more to do: a second run reads nothing from the store
    again = restore(st_, "latest", str(target), overwrite="if-changed", delete=True)
    assert (again.bytes_read, again.bytes_written, again.files, again.deleted) == (0, 0, 0, 0)
    assert tree_state(root) == expected
    st_.close()


@pytest.fixture
def big(tmp_path: Path) -> tuple[Store, Path, Path]:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "big").write_bytes(os.urandom(12 << 20))
    (src / "zeros").write_bytes(os.urandom(1000) + bytes(3 << 20) + os.urandom(1000))
    for i in range(20):
        (src / "d" / f"f{i}").write_bytes(os.urandom(5000 + i))
    st_ = make_store(tmp_path / "store")
    backup(st_, [str(src)], BackupOptions())
    return st_, src, tmp_path / "t"


def test_one_changed_chunk_of_a_large_file_is_all_that_is_read_and_written(
    big: tuple[Store, Path, Path]
) -> None:
    st_, src, target = big
    full = restore(st_, "latest", str(target))
    root = restored_root(target, src)
    ino = os.stat(root / "big").st_ino
    with open(root / "big", "r+b") as f:  # one byte in the middle: one chunk differs
        f.seek(6 << 20)
        b = f.read(1)
        f.seek(6 << 20)
        f.write(bytes([b[0] ^ 1]))
    with open(root / "zeros", "r+b") as f:  # data where the snapshot has zeros (a hole)
        f.seek(1 << 20)
        f.write(os.urandom(1 << 20))
    res = restore(st_, "latest", str(target), overwrite="if-changed")
    assert tree_state(root) == tree_state(src)
    assert os.stat(root / "big").st_ino == ino  # updated in place, not recreated
    assert res.files == 2 and res.unchanged == 20
    assert 0 < res.bytes_written <= 8 << 20 and res.bytes_written < full.bytes_written / 2
    assert 0 < res.bytes_read < full.bytes_read / 2


def test_modes_never_and_if_newer(big: tuple[Store, Path, Path]) -> None:
    st_, src, target = big
    restore(st_, "latest", str(target))
    f = restored_root(target, src) / "d" / "f1"
    f.write_bytes(b"mine")
    os.utime(f, ns=(4_000_000_000 * 10**9, 4_000_000_000 * 10**9))  # newer than the snapshot
    res = restore(st_, "latest", str(target), overwrite="never")
    assert f.read_bytes() == b"mine" and res.skipped == 22 and res.files == 0
    res = restore(st_, "latest", str(target), overwrite="if-newer")
    assert f.read_bytes() == b"mine" and res.files == 0
    os.utime(f, ns=(1, 1))  # now older than the snapshot's
    res = restore(st_, "latest", str(target), overwrite="if-newer")
    assert f.read_bytes() == (src / "d" / "f1").read_bytes() and res.files == 1


def test_dry_run_json_names_each_action_and_writes_nothing(
    big: tuple[Store, Path, Path], tmp_path: Path
) -> None:
    st_, src, target = big
    restore(st_, "latest", str(target))
    st_.close()
    root = restored_root(target, src)
    (root / "d" / "f2").write_bytes(b"changed")
    (root / "d" / "f3").unlink()
    (root / "d" / "extra").write_bytes(b"not in the snapshot")
    before = tree_state(target)
    r = run_cli("restore", "--store", str(tmp_path / "store"), "--json", "--dry-run",
                "--overwrite", "if-changed", "--delete", "latest", str(target))
    assert r.returncode == 0, r.stderr
    assert tree_state(target) == before
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    acts = {x["item"]: x["action"] for x in lines if x["message_type"] == "verbose_status"}
    assert acts[str(root / "d" / "f2")] == "updated"
    assert acts[str(root / "d" / "f3")] == "restored"
    assert acts[str(root / "d" / "extra")] == "deleted"
    assert acts[str(root / "big")] == "unchanged"
    summary = lines[-1]
    assert summary["message_type"] == "summary" and summary["dry_run"] is True
    assert (summary["files_restored"], summary["files_skipped"], summary["files_deleted"]) \
        == (2, 20, 1)
    assert summary["bytes_restored"] == 5002 + 5003
    assert summary["total_files"] == 22


def test_delete_stays_inside_backed_up_paths_and_never_follows(
    big: tuple[Store, Path, Path], tmp_path: Path
) -> None:
    st_, src, target = big
    outside = make_outside(tmp_path / "outside")
    restore(st_, "latest", str(target))
    root = restored_root(target, src)
    (target / "not-backed-up").write_bytes(b"keep me")  # beside the mirrored path
    (root.parent / "sibling").mkdir()
    os.symlink(outside, root / "d" / "link-out")
    os.symlink(outside, root / "dir-out")
    before = outside_state(outside)
    res = restore(st_, "latest", str(target), overwrite="if-changed", delete=True)
    assert res.deleted == 2 and res.failed == []
    assert outside_state(outside) == before
    assert (target / "not-backed-up").read_bytes() == b"keep me"
    assert (root.parent / "sibling").is_dir()
    assert tree_state(root) == tree_state(src)
    # with --include, only what the patterns select is deleted
    (root / "d" / "x1").write_bytes(b"1")
    (root / "x2").write_bytes(b"2")
    res = restore(st_, "latest", str(target), overwrite="if-changed", delete=True,
                  include=["/**/d/"])
    assert not (root / "d" / "x1").exists() and (root / "x2").exists()


def test_subtree_and_strip_components_restore_at_the_target_root(
    big: tuple[Store, Path, Path], tmp_path: Path
) -> None:
    st_, src, _ = big
    a, b = tmp_path / "a", tmp_path / "b"
    restore(st_, f"latest:{src}", str(a))
    assert tree_state(a) == tree_state(src)
    depth = len(Path(os.path.abspath(src)).parts) - 1
    restore(st_, "latest", str(b), strip_components=depth)
    assert tree_state(b) == tree_state(src)
    c = tmp_path / "c"
    restore(st_, f"latest:{src}/d/f4", str(c))
    assert (c / "f4").read_bytes() == (src / "d" / "f4").read_bytes()
    r = run_cli("restore", "--store", str(tmp_path / "store"), "--strip-components",
                str(depth + 1), "latest", str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    assert tree_state(tmp_path / "e") == tree_state(src / "d")  # "big" was left out


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_target_slash_restores_in_place_inside_a_private_mount(
    big: tuple[Store, Path, Path], tmp_path: Path
) -> None:
    """``--target /``: the tree goes back where it was backed up from. Run in a private
    mount namespace with a tmpfs over the source's parent, so the real tree is never
    written: what lands there is compared, inside the namespace, with a copy."""
    st_, src, _ = big
    st_.close()
    ref = tmp_path / "reference"
    shutil.copytree(src, ref, symlinks=True)
    shutil.copystat(src, ref)
    shutil.rmtree(src / "d")  # the original place differs from the snapshot
    (src / "big").write_bytes(b"short now")
    (src / "stray").write_bytes(b"not in the snapshot")
    cmd = (
        f"set -e; mkdir -p {tmp_path}/src-copy; cp -a {src}/. {tmp_path}/src-copy/; "
        f"mount -t tmpfs none {src}; cp -a {tmp_path}/src-copy/. {src}/; "
        f"rm -rf {tmp_path}/src-copy; "
        f"{sys.executable} -m casbackup restore --store {tmp_path / 'store'} "
        f"--overwrite if-changed --delete latest /; "
        f"{sys.executable} -c 'import sys; from tests.helpers import tree_state; "
        f"sys.exit(0 if tree_state(sys.argv[1]) == tree_state(sys.argv[2]) else 9)' "
        f"{src} {ref}"
    )
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                       env=cli_env(), capture_output=True, cwd=os.getcwd(), timeout=300)
    if r.returncode != 0 and b"unshare failed" in r.stderr:
        pytest.skip("no mount namespaces here")
    assert r.returncode == 0, (r.stdout, r.stderr)
    # outside the namespace the original place is as the test left it
    assert (src / "stray").read_bytes() == b"not in the snapshot"
    assert not (src / "d").exists()
