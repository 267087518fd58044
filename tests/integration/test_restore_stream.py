"""A windowed restore is the plain restore, and a damaged tree is found before any write.

restore writes the walk one bounded window at a time (``ops/restore_window.py``): the
directories still open and a hard link's file from an earlier window are carried, and a
directory gets its metadata when the walk leaves it. For hypothesis-drawn trees (nested
directories, read-only ones, empty and multi-chunk files, symlinks, hard links across
directories, distinct mtimes and modes) and random window sizes down to one entry and
one blob, the restored tree must equal a restore in one window byte for byte, metadata
included, with and without an ``--include`` pattern, and into an existing tree with
``--overwrite if-changed``. And since every tree is checked before anything is written,
a damaged tree deep in the snapshot is named (exit 13) with the target left untouched.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.chunking import ChunkerParams
from casbackup.errors import IntegrityError, NothingMatched
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.store import Store, init_store
from tests.helpers import (
    FAST_KDF,
    PASSWORD,
    cli_env,
    open_test_store,
    run_cli,
    tree_state,
    write_tree,
)

MIN = 1024  # small chunks: multi-blob files stay small
CHUNKER = ChunkerParams(min_size=MIN, avg_size=2048, max_size=4096, seed=3)
BIG = 1 << 30  # a window holding everything: the plain restore

_names = st.text(alphabet="abcdef_", min_size=1, max_size=4)
_content = st.builds(lambda size, seed: bytes((seed + i * 13) % 256 for i in range(size)),
                     st.sampled_from([0, 1, 300, MIN + 1, 5000, 9000]), st.integers(0, 2))
_tree = st.recursive(
    st.dictionaries(_names, _content, max_size=5),
    lambda kids: st.dictionaries(_names, st.one_of(_content, kids), max_size=4),
    max_leaves=25,
)


def _decorate(root: Path, seed: int) -> None:
    """Hard links across directories, symlinks, modes (read-only directories) and
    distinct mtimes, deterministically from SEED."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    dirs = sorted(p for p in root.rglob("*") if p.is_dir())
    for k, f in enumerate(files[seed % 3 :: 3]):
        target = dirs[(seed + k) % len(dirs)] if dirs else root
        link = target / f"hl{k}"
        if not link.exists():
            os.link(f, link)
    for k, d in enumerate(dirs[:: 2]):
        os.symlink(f"../x{k}", d / f"sym{k}")
    everything = sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for k, p in enumerate(everything):
        if not p.is_symlink():
            p.chmod((0o755 if k % 4 else 0o555) if p.is_dir() else (0o644 if k % 3 else 0o600))
        os.utime(p, ns=(1_600_000_000_000_000_000 + k * 1_000_003,) * 2,
                 follow_symlinks=False)


def _store(path: Path) -> Store:
    return init_store(str(path), PASSWORD, kdf_n=FAST_KDF, chunker=CHUNKER)


def _restore(st_: Store, out: Path, entries: int, blobs: int, **kw: object) -> None:
    res = restore(st_, "latest", str(out), window_entries=entries, window_blobs=blobs,
                  **kw)  # type: ignore[arg-type]
    assert res.failed == [] and res.warnings == []


def _wipe(p: Path) -> None:
    for d in [p, *p.rglob("*")]:
        if d.is_dir() and not d.is_symlink():
            d.chmod(0o755)
    shutil.rmtree(p)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(spec=_tree, seed=st.integers(0, 5), entries=st.integers(1, 12),
       blobs=st.integers(1, 8), include=st.sampled_from([None, "a*", "*b*", "hl*"]))
def test_windowed_restore_equals_the_plain_restore(
        tmp_path: Path, spec: dict[str, object], seed: int, entries: int, blobs: int,
        include: str | None) -> None:
    work = tmp_path / "w"
    if work.exists():
        _wipe(work)
    work.mkdir()
    src = work / "src"
    write_tree(src, {"top": spec})
    _decorate(src / "top", seed)
    st_ = _store(work / "store")
    backup(st_, [str(src)], BackupOptions())
    inc = [include] if include else None
    try:
        _restore(st_, work / "plain", BIG, BIG, include=inc)
    except NothingMatched:  # the random tree has no entry the pattern matches
        assert include is not None
        assert not any(fnmatch.fnmatch(p.name, include) for p in (src / "top").rglob("*"))
        with pytest.raises(NothingMatched):
            _restore(st_, work / "win", entries, blobs, include=inc)
        assert not (work / "plain").exists() and not (work / "win").exists()
        st_.close()
        return
    _restore(st_, work / "win", entries, blobs, include=inc)
    assert tree_state(work / "win") == tree_state(work / "plain")
    if include is None:
        assert tree_state(work / "plain" / str(src).lstrip("/")) == tree_state(src)
    # over an existing, partly different tree: in place, window by window
    over = work / "over"
    shutil.copytree(work / "plain", over, symlinks=True)
    for i, f in enumerate(sorted(p for p in over.rglob("*") if p.is_file())):
        if i % 2 == 0 and os.access(f.parent, os.W_OK):
            f.chmod(0o644)
            f.write_bytes(b"changed")
    _restore(st_, over, entries, blobs, include=inc, overwrite="if-changed")
    assert tree_state(over) == tree_state(work / "plain")
    st_.close()


def _deep_tree_blob(st_: Store, depth: int) -> bytes:
    """The id of the tree DEPTH directories below the snapshot's root."""
    tid = st_.snapshots()[-1].tree
    for _ in range(depth):
        sub = [n for n in st_.load_tree(tid).nodes if n.subtree is not None]
        tid = sub[-1].subtree  # the last directory: walked after every file before it
        assert tid is not None
    return tid


def test_damaged_deep_tree_is_named_before_anything_is_written(tmp_path: Path) -> None:
    src = tmp_path / "src"
    spec: dict[str, object] = {f"f{i:03d}": b"%d" % i for i in range(50)}
    spec["zz"] = {"deeper": {"last": {"leaf": b"leaf"}}}
    write_tree(src, spec)
    st_ = _store(tmp_path / "store")
    backup(st_, [str(src)], BackupOptions())
    depth = len(src.parts)  # the snapshot mirrors the absolute path: / tmp ... src
    bad = _deep_tree_blob(st_, depth + 2)  # the tree of src/zz/deeper
    loc = st_.locate(bad)
    st_.close()
    pack = next((tmp_path / "store").rglob(loc.pack + "*"))
    data = bytearray(pack.read_bytes())
    data[loc.entry.offset + loc.entry.length // 2] ^= 0x40
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    target = tmp_path / "out"
    st_ = open_test_store(tmp_path / "store")
    with pytest.raises(IntegrityError, match="zz/deeper"):
        restore(st_, "latest", str(target), window_entries=1, window_blobs=1)
    assert not target.exists()  # the 50 files walked before it were not written either
    st_.close()
    r = run_cli("restore", "--store", str(tmp_path / "store"), "latest", str(target),
                env=cli_env())
    assert r.returncode == 13, r.stderr
    assert b"zz/deeper" in r.stderr and not target.exists()
