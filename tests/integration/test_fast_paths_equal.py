"""The backup's fast paths store exactly what the plain definition says (issue 17).

The archiver takes shortcuts: small files are read, hashed and sealed in batches
(``FileSaver._save_small_batch``) and packed with one write per batch, an unchanged
file reuses its parent node's map without being read, an unchanged directory keeps its
parent's tree id without re-encoding. None of them may change what is stored. For
hypothesis-generated trees (nested directories, empty files, files around the chunker's
``min_size`` and several chunks long, duplicates, symlinks, hard links) every backup --
the first, an unchanged re-backup from the parent, a ``full`` one that reads everything,
and one with batching turned off -- must give the tree id that a plain recursive
reference computes straight from ``lstat``, the chunker and ``Tree.encode``; and every
file must read back as its bytes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.chunking import ChunkerParams
from casbackup.model.tree import DIR, FILE, Tree
from casbackup.ops import archiver
from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.source.meta import node_from_stat
from casbackup.store import Store, init_store
from tests.helpers import FAST_KDF, PASSWORD, source_subtree, write_tree

MIN = 4096  # chunker sizes scaled down so that multi-chunk files stay small
CHUNKER = ChunkerParams(min_size=MIN, avg_size=8192, max_size=32768, seed=7)

_names = st.text(alphabet="abcdefgh_.-", min_size=1, max_size=6).filter(
    lambda n: n not in (".", ".."))
_sizes = st.sampled_from([0, 1, 100, MIN - 1, MIN, MIN + 1, 3 * MIN, 20_000, 90_000])


@st.composite
def _content(draw: st.DrawFn) -> bytes:
    size = draw(_sizes)
    seed = draw(st.integers(0, 3))  # few seeds: equal files (dedup) are common
    text = draw(st.booleans())
    unit = (b"line %d of some text\n" % seed) if text else os.urandom(0) + bytes(
        (seed * 31 + i * 7) % 251 for i in range(251))
    return (unit * (size // len(unit) + 1))[:size]


_tree = st.recursive(
    st.dictionaries(_names, _content(), max_size=6),
    lambda kids: st.dictionaries(_names, st.one_of(_content(), kids), max_size=5),
    max_leaves=30,
)


def reference(store: Store, path: bytes) -> bytes:
    """The plain definition of a directory's tree id: lstat every entry in name order,
    cut every regular file with the store's chunker, encode the Tree, hash it."""
    nodes = []
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        node = node_from_stat(name, p, os.lstat(p))
        if node.type == DIR:
            node.subtree = reference(store, p)
        elif node.type == FILE:
            with open(p, "rb") as f:
                node.content = [store.codec.blob_id(c) for c in store.chunker.cut_stream(f)]
        nodes.append(node)
    return store.codec.blob_id(Tree(nodes).encode())


def _check_contents(store: Store, tid: bytes, path: bytes) -> None:
    for node in store.load_tree(tid).nodes:
        p = os.path.join(path, node.name)
        if node.type == DIR:
            assert node.subtree is not None
            _check_contents(store, node.subtree, p)
        elif node.type == FILE:
            data = b"".join(store.get_blob(b) for b in node.content or [])
            assert data == Path(os.fsdecode(p)).read_bytes()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=_tree, link=st.booleans())
def test_fast_paths_store_what_the_plain_path_defines(
        tmp_path: Path, spec: dict[str, object], link: bool) -> None:
    work = tmp_path / "w"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    src = work / "src"
    write_tree(src, spec)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if link and files:
        os.symlink(files[0].name, files[0].parent / "zz-symlink")
        os.link(files[-1], files[-1].parent / "zz-hardlink")
    store = init_store(str(work / "store"), PASSWORD, kdf_n=FAST_KDF, chunker=CHUNKER)
    bsrc = os.fsencode(src)
    want = reference(store, bsrc)

    def run(btype: str) -> bytes:
        res = backup(store, [str(src)], BackupOptions(type=btype,
                                                      archive=ArchiveOptions(prefetch=False)))
        return source_subtree(store, res.snapshot.tree, bsrc)

    first = run("incremental")
    assert first == want
    assert run("incremental") == want  # unchanged: the parent's maps and trees reused
    assert run("full") == want  # no parent: every file read again
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(archiver, "_BATCH_FILES", 1)  # every file on its own: _save_one
        assert run("full") == want
    _check_contents(store, want, bsrc)
