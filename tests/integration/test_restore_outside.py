"""restore --overwrite never touches anything outside TARGET (issue #11, first section).

Whatever stands in the target where the snapshot puts an entry -- a symlink to an
outside directory or file (at every level, the mirrored source prefix included), a hard
link to an outside file, a file where a directory belongs, a directory where a file
belongs -- is replaced, never followed or written through: the outside area is
unchanged (content, mode, owner, inode, mtime of every entry) and the restored tree is
exact.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.store import Store
from tests.helpers import cli_env, make_store, restored_root, run_cli, tree_state
from tests.integration.restore_env import make_outside, outside_state


def _source(root: Path) -> Path:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "leaf").write_bytes(b"leaf\n")
    (root / "a" / "b" / "mid").write_bytes(os.urandom(300_000))
    (root / "a" / "top").write_bytes(b"top\n" * 10)
    (root / "one").write_bytes(b"one")
    os.link(root / "one", root / "a" / "b" / "one-link")
    os.symlink("one", root / "a" / "sym")
    os.chmod(root / "a" / "b", 0o750)
    os.chmod(root / "one", 0o604)
    return root


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.src = _source(base / "src")
        self.outside = make_outside(base / "outside")
        self.store: Store = make_store(base / "store")
        backup(self.store, [str(self.src)], BackupOptions())
        self.expected = tree_state(self.src)
        rel = os.path.abspath(self.src).lstrip("/")
        prefix = [os.path.join(*Path(rel).parts[: i + 1]) for i in range(len(Path(rel).parts))]
        below = sorted(os.path.relpath(os.path.join(d, n), self.src)
                       for d, ds, fs in os.walk(self.src) for n in ds + fs)
        # every position restore writes, relative to the target: (path, is a directory)
        self.positions = [(p, True) for p in prefix] + [
            (os.path.join(rel, p), (self.src / p).is_dir() and not (self.src / p).is_symlink())
            for p in below]

    def check(self, target: Path, before: dict[bytes, object]) -> None:
        assert outside_state(self.outside) == before
        assert tree_state(restored_root(target, self.src)) == self.expected


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("outside"))


def _plant(outside: Path, target: Path, pos: str, kind: str) -> None:
    p = target / pos
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink-dir":
        os.symlink(outside, p)
    elif kind == "symlink-sub":
        os.symlink(outside / "sub", p)
    elif kind == "symlink-file":
        os.symlink(outside / "victim", p)
    elif kind == "hardlink":
        os.link(outside / "victim", p)
    elif kind == "file":
        p.write_bytes(b"junk file in the way")
    elif kind == "dir":
        (p / "x" / "y").mkdir(parents=True)
        (p / "x" / "y" / "z").write_bytes(b"junk")
        os.symlink(outside / "victim", p / "x" / "to-victim")


KINDS = ["symlink-dir", "symlink-sub", "symlink-file", "hardlink", "file", "dir"]


@pytest.mark.parametrize("kind", KINDS)
def test_planted_entry_at_every_level_is_replaced_not_followed(
    env: Env, tmp_path: Path, kind: str
) -> None:
    n = 0
    for k, (pos, is_dir) in enumerate(env.positions):
        if kind == "dir" and is_dir:
            continue  # a real directory where one belongs is reused (tested below)
        target = tmp_path / f"t{k}"
        _plant(env.outside, target, pos, kind)
        before = outside_state(env.outside)
        res = restore(env.store, "latest", str(target), overwrite="always")
        assert res.failed == []
        env.check(target, before)
        n += 1
    assert n >= 6


def test_type_changes_are_replaced(env: Env, tmp_path: Path) -> None:
    """file -> dir, dir -> file and symlink -> dir between the snapshot and the target."""
    rel = Path(os.path.abspath(env.src).lstrip("/"))
    target = tmp_path / "t"
    shutil.copytree(env.src, target / rel, symlinks=True)
    t = target / rel
    (t / "a" / "b" / "c" / "leaf").unlink()
    (t / "a" / "b" / "c" / "leaf").mkdir()  # a directory where a file belongs
    (t / "a" / "b" / "c" / "leaf" / "inner").write_bytes(b"x")
    shutil.rmtree(t / "a" / "b" / "c")
    (t / "a" / "b" / "c").write_bytes(b"a file where a directory belongs")
    (t / "a" / "sym").unlink()
    (t / "a" / "sym").mkdir()  # a directory where a symlink belongs
    shutil.rmtree(t / "a" / "b")
    os.symlink(env.outside, t / "a" / "b")  # a symlink where a directory belongs
    before = outside_state(env.outside)
    restore(env.store, "latest", str(target), overwrite="always")
    env.check(target, before)


def test_existing_real_directories_are_reused(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "t"
    restore(env.store, "latest", str(target))
    (restored_root(target, env.src) / "a" / "top").write_bytes(b"changed")
    before = outside_state(env.outside)
    restore(env.store, "latest", str(target), overwrite="always")
    env.check(target, before)


def test_cli_names_what_is_in_the_way_printably(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "t"
    (target / "x").mkdir(parents=True)
    r = run_cli("restore", "--store", str(env.base / "store"), "latest", str(target),
                env=cli_env())
    assert r.returncode == 2
    assert b"is not empty (use --overwrite always|if-changed|if-newer|never)" in r.stderr
    assert b"b'" not in r.stderr


# names restore must reproduce exactly, and junk of every kind at random positions
_names = st.sampled_from(["a", "b", "c", "d\nnl", "e\udcff"])


@st.composite
def _trees(draw: st.DrawFn, depth: int = 0) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in draw(st.lists(_names, unique=True, max_size=4)):
        kind = draw(st.sampled_from(["file", "dir", "link"] if depth < 3 else ["file", "link"]))
        if kind == "dir":
            out[name] = draw(_trees(depth + 1))
        elif kind == "file":
            out[name] = draw(st.binary(max_size=64))
        else:
            out[name] = "->" + draw(st.sampled_from(["a", "../b", "/nonexistent"]))
    return out


def _build(root: Path, tree: dict[str, object]) -> list[tuple[Path, bool]]:
    root.mkdir(parents=True)
    made: list[tuple[Path, bool]] = []
    for name, v in tree.items():
        p = root / name
        if isinstance(v, dict):
            made.append((p, True))
            made += _build(p, v)
        elif isinstance(v, bytes):
            p.write_bytes(v)
            made.append((p, False))
        else:
            assert isinstance(v, str)
            os.symlink(v[2:], p)
            made.append((p, False))
    return made


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=_trees(), data=st.data())
def test_random_trees_over_random_junk(tmp_path: Path, tree: dict[str, object],
                                       data: st.DataObject) -> None:
    base = tmp_path / os.urandom(6).hex()  # one tmp_path for all examples
    src = base / "src"
    entries = _build(src, tree)
    outside = make_outside(base / "outside")
    store = make_store(base / "store")
    backup(store, [str(src)], BackupOptions())
    target = base / "target"
    root = restored_root(target, src)
    root.mkdir(parents=True)
    for p, is_dir in data.draw(st.lists(st.sampled_from(entries), unique=True), "junk at") \
            if entries else []:
        kinds = [k for k in KINDS if not (is_dir and k == "dir")]
        kind = data.draw(st.sampled_from(kinds), f"junk kind at {p.name!r}")
        dst = root / p.relative_to(src)
        if dst.parent.is_dir() and not dst.parent.is_symlink() and not os.path.lexists(dst):
            _plant(outside, root, str(p.relative_to(src)), kind)
    before = outside_state(outside)
    res = restore(store, "latest", str(target), overwrite="always")
    assert res.failed == []
    assert outside_state(outside) == before
    assert tree_state(root) == tree_state(src)


def test_without_overwrite_what_is_in_the_way_is_named_not_followed(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry appearing after the emptiness check (another process) is named, left
    alone and never followed; everything else is restored."""
    from casbackup.ops import restore as restore_mod

    target = tmp_path / "t"
    target.mkdir()
    top = restored_root(target, env.src) / "a" / "top"
    check = restore_mod.check  # the checking pass: the writes come right after it

    def check_then_plant(*args: object, **kw: object) -> object:
        out = check(*args, **kw)  # type: ignore[arg-type]
        top.parent.mkdir(parents=True)
        os.symlink(env.outside / "victim", top)
        os.symlink(env.outside, top.parent / "b")
        return out

    monkeypatch.setattr(restore_mod, "check", check_then_plant)
    before = outside_state(env.outside)
    res = restore(env.store, "latest", str(target))
    assert outside_state(env.outside) == before
    root = restored_root(target, env.src)
    assert sorted(res.failed) == [  # one is a hard link of a/b/one-link, made first
        f"{top.parent / 'b'}: a symlink is in the way (use --overwrite MODE)",
        f"{top}: a symlink is in the way (use --overwrite MODE)",
        f"{root / 'one'}: its hard link {top.parent / 'b' / 'one-link'} could not be restored",
    ]
    assert os.readlink(root / "a" / "sym") == "one"


def test_include_of_one_hard_link_member_restores_its_content(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "t"
    restore(env.store, "latest", str(target), include=["one-link"])
    got = restored_root(target, env.src) / "a" / "b" / "one-link"
    assert got.read_bytes() == b"one"
    assert not (restored_root(target, env.src) / "one").exists()
