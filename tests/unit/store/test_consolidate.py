"""Automatic consolidation of small index objects (store/consolidate.py): exact (the packs
the index names are unchanged), durable before deletion, never beside a gc, and cheap for
readers whose cache was built from the objects it superseded."""

from __future__ import annotations

from pathlib import Path

import pytest

from casbackup.crypto.codec import DATA, INDEX
from casbackup.ops.verify import verify
from casbackup.store import consolidate
from casbackup.store.cachedir import CacheSettings
from casbackup.store.index import decode_index_object
from casbackup.store.locks import maintenance_lock
from casbackup.store.store import Store
from tests.helpers import PASSWORD, make_store


def _open(path: Path) -> Store:
    from casbackup.store import open_store

    return open_store(str(path), lambda: PASSWORD, cache=CacheSettings(path.parent / "cache"))


def _many_objects(path: Path, n: int) -> list[bytes]:
    st = make_store(path)
    blobs = []
    for i in range(n):
        blobs.append(st.add_blob(DATA, f"object {i} ".encode() * 40).id)
        st.flush()
    st.close()
    return blobs


def _named_packs(st: Store) -> set[str]:
    return {p.name for n in st._index_names() for p in st.read_index_object(n)}


def test_many_small_objects_become_one_exact_object(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consolidate, "MIN_OBJECTS", 5)
    blobs = _many_objects(tmp_path / "s", 8)
    st = _open(tmp_path / "s")
    before, packs = sorted(st._index_names()), _named_packs(st)
    assert len(before) == 8
    new = consolidate.maybe_consolidate(st)
    assert new is not None and st._index_names() == [new]
    packs_after, sup, exact = decode_index_object(st.read_object("index/", new, INDEX), new)
    assert exact and sorted(sup) == before
    assert {p.name for p in packs_after} == packs  # the index names the same packs
    st.close()
    fresh = _open(tmp_path / "s")
    fresh.load_index()
    assert all(fresh.has_blob(b) for b in blobs)
    assert verify(fresh, read_data=True).ok
    fresh.close()


def test_few_objects_are_left_alone(tmp_path: Path) -> None:
    _many_objects(tmp_path / "s", 3)
    st = _open(tmp_path / "s")
    assert consolidate.maybe_consolidate(st) is None and len(st._index_names()) == 3
    st.close()


def test_it_never_runs_beside_a_maintenance_session(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consolidate, "MIN_OBJECTS", 2)
    _many_objects(tmp_path / "s", 4)
    gc_store = _open(tmp_path / "s")
    st = _open(tmp_path / "s")
    with maintenance_lock(gc_store, "gc"):
        assert consolidate.maybe_consolidate(st) is None
        assert len(st._index_names()) == 4
    assert consolidate.maybe_consolidate(st) is not None
    st.close()
    gc_store.close()


def test_a_reader_with_a_warm_cache_reads_only_the_consolidated_object(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consolidate, "MIN_OBJECTS", 5)
    blobs = _many_objects(tmp_path / "s", 8)
    warm = _open(tmp_path / "s")
    warm.load_index()  # the cache now holds a file built from the 8 small objects
    assert warm.cache_dir is not None
    files = sorted(p.name for p in (warm.cache_dir / "compact-index").iterdir())
    warm.close()
    st = _open(tmp_path / "s")
    consolidate.maybe_consolidate(st)
    st.close()
    reader = _open(tmp_path / "s")
    reads: list[str] = []
    orig = reader.read_object

    def counted(prefix: str, name: str, kind: str) -> bytes:
        reads.append(prefix + name)
        return orig(prefix, name, kind)

    reader.read_object = counted  # type: ignore[method-assign]
    reader.load_index()
    assert len(reads) == 1  # the consolidated object: nothing rebuilt from the store
    assert sorted(p.name for p in (reader.cache_dir / "compact-index").iterdir()) == files
    assert all(reader.get_blob(b) for b in blobs)
    new = reader.add_blob(DATA, b"after the consolidation" * 10).id
    reader.flush()
    reader.close()
    again = _open(tmp_path / "s")
    again.load_index()
    assert again.has_blob(new) and all(again.has_blob(b) for b in blobs)
    again.close()


def test_a_refresh_across_a_consolidation_keeps_every_blob(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived store (watch, sync) that loaded before the consolidation."""
    monkeypatch.setattr(consolidate, "MIN_OBJECTS", 5)
    blobs = _many_objects(tmp_path / "s", 8)
    long_lived = _open(tmp_path / "s")
    long_lived.load_index()
    other = _open(tmp_path / "s")
    consolidate.maybe_consolidate(other)
    other.close()
    long_lived.refresh_index()
    assert long_lived.index_rebuilds == 1
    assert all(long_lived.has_blob(b) for b in blobs)
    assert set(long_lived.index.objects) == set(long_lived._index_names())
    long_lived.close()


def test_a_backup_beside_a_gc_skips_consolidation_in_one_verbose_line(tmp_path: Path) -> None:
    """Real ``casbackup backup`` processes while this process holds gc's maintenance
    lock: the backup succeeds (consolidation is an optimisation), says so once with -v
    and not at all without, and changes no index object but its own."""
    from tests.helpers import cli_env, index_names, run_cli

    store = tmp_path / "s"
    _many_objects(store, consolidate.MIN_OBJECTS + 2)
    src = tmp_path / "src"
    src.mkdir()
    env = cli_env(CASBACKUP_CACHE_DIR=str(tmp_path / "cache"))

    def backup(*extra: str) -> tuple[list[str], int]:
        (src / "f").write_text(f"new content {len(list(src.iterdir()))} {extra}\n")
        p = run_cli("backup", str(src), "--store", str(store), *extra, env=env)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        with _open(store) as st:
            n = len(index_names(st))
        return [ln for ln in p.stderr.decode().splitlines() if "consolidation" in ln], n

    gc_store = _open(store)
    with maintenance_lock(gc_store, "gc"):
        lines, n = backup("-v")
        assert len(lines) == 1 and "skipped" in lines[0] and "gc" in lines[0], lines
        assert n == consolidate.MIN_OBJECTS + 3  # the backup's own object, nothing merged
        lines, n = backup()
        assert lines == [] and n == consolidate.MIN_OBJECTS + 4
    gc_store.close()
    lines, n = backup("-v")  # the gc is gone: this backup consolidates
    assert lines == [] and n < consolidate.MIN_OBJECTS
