"""An open store's index: loading it from the index objects listed now (through the local
compact files of ``indexcache.py``), picking up other writers' objects, leaving out the
packs gc condemned, and writing index objects. A layer of ``Store`` (store.py).

Invariants:
- ``load_index`` covers exactly the index objects listed when it runs (a compact file is
  used only if all its sources are listed); an object that vanishes while being read (gc
  beside us consolidated it) means: list again, never an index missing its packs.
- ``write_index`` runs only after the packs it names are durable (DESIGN §9: packs, then
  the index naming them, then the snapshot); its object is content-named and put
  exclusively (``put_named``).
- Packs in ``excluded`` (condemned by pending gc records, DESIGN §8) are never looked up
  in a loaded index, so nothing dedups against them; ``read_index_object`` and
  ``index_object`` still show an object's packs as stored.
- ``refresh_index`` and ``exclude_packs`` replace the index's contents in place: the
  ``StoreIndex`` object the packer holds stays the same object.
- The compact files of the index objects this process wrote are only an economy: any
  failure to write them leaves the next command to build its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import CasError, IntegrityError, NotFound
from ..ids import INDEX, object_name
from . import indexcache
from .compactindex import CompactFile, merge_files
from .index import SPILL_WINDOW, IndexEncoder, PackInfo, StoreIndex, decode_index
from .indexruns import object_run
from .layout import INDEX_DIR, index_key, name_of
from .objects import StoreObjects


class _Vanished(Exception):
    """An index object listed a moment ago is gone (gc consolidated it): list again."""


class StoreIndexing(StoreObjects):
    """The index of an open store (the ``index`` attribute) and its index objects."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index = StoreIndex()
        self._index_loaded = False
        self.index_rebuilds = 0  # times refresh_index found index objects gone
        # two-phase gc (DESIGN §8): packs condemned by pending gc records are not loaded
        # into the index
        self.excluded: frozenset[str] = frozenset()
        # the write session's check of the packer's index objects once written:
        # (packs, name) (store/commit.py)
        self.after_index: Callable[[list[PackInfo], str], None] | None = None
        self._written: dict[str, list[PackInfo]] = {}  # index objects written, not yet cached
        self._spilled: dict[str, CompactFile] = {}  # ... and those moved out of the dicts

    # ----- loading ---------------------------------------------------------------------

    def load_index(self) -> StoreIndex:
        """The index of every object listed now: compact files in the cache directory
        (built from the objects not yet in one: ``indexcache.py``) under the in-memory
        layer. Per-command cost follows what was added since the last run, not the store."""
        if self._index_loaded:
            return self.index
        self.index.rebuild = self._rebuild_compact
        self.index.set_excluded(self.excluded)
        self.index.set_bases(*self._cover(()))
        self._index_loaded = True
        return self.index

    def load_full_index(self) -> StoreIndex:
        """``load_index`` with every pack and entry in memory (``.blobs``/``.packs``): for
        gc, repair and stats, which walk every pack."""
        idx = self.load_index()
        if idx.bases:
            packs = [p for p in idx.iter_packs() if p.name not in idx.packs]
            idx.take_bases()
            for p in packs:
                idx.add_pack(p)
        return idx

    def mark_index_loaded(self) -> None:
        """For verify, which loads index objects one by one to report each problem."""
        self._index_loaded = True

    def has_blob(self, blob_id: bytes) -> bool:
        return blob_id in self.index

    def _index_dir(self) -> Path | None:
        """Where this store's compact index files live: ``<cache_dir>/compact-index``; None
        when there is no cache (or it cannot be written): unnamed files of this process's
        own, then, so nothing is written outside the store."""
        if self.cache_dir is None:
            return None
        path = self.cache_dir / "compact-index"
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return None
        return path

    def _cover(self, known: Iterable[str]) -> tuple[list[CompactFile], set[str]]:
        """Compact files covering every index object listed now except ``known``. An
        object that vanishes while being read (a gc beside us consolidated it) means:
        list again -- its packs are in an object written before it was deleted."""
        skip = set(known)
        for _ in range(20):
            names = set(self._index_names()) - skip
            directory = self._index_dir()
            try:
                got = indexcache.cover(directory, names, self._index_rows, self.on_warning)
            except _Vanished:
                continue
            if self.object_cache is not None and directory is not None:
                # one local copy of an index object: once a compact file holds its
                # entries, the object copy (which ``write_index`` or this cover's read
                # left) goes; a rebuild or a consolidation reads the store again
                self.object_cache.retain(INDEX_DIR, ())
            return got
        raise IntegrityError("index objects keep vanishing while being read (gc beside "
                             "us?); try again")

    def _index_names(self) -> list[str]:
        return list(dict.fromkeys(name_of(i.key) for i in self.backend.list(INDEX_DIR)))

    def _index_rows(self, name: str) -> indexcache.Fetched:
        """Index object NAME as a sorted run, decoded streaming (``indexruns.py``: no
        Python object per entry, so a huge object costs its bytes and a window)."""
        try:
            run, supersedes, exact = object_run(
                self.read_object(INDEX_DIR, name, INDEX), name, self._index_dir())
        except IntegrityError:
            if not self._exists(index_key(name)):
                raise _Vanished(name) from None
            raise  # present, so damaged
        return indexcache.Fetched(supersedes=tuple(supersedes), exact=exact, run=run)

    def _rebuild_compact(self, damaged: CompactFile) -> CompactFile:
        """A lookup found ``damaged`` failing its checks: build it again from its
        sources (which were all listed when it was opened; one gone means gc replaced
        it, and the rebuild fails with the object's error: run the command again)."""
        if self.on_warning is not None:
            self.on_warning(f"local index cache {damaged.path.name[:16]} is damaged; "
                            "rebuilding it from the store's index objects")
        if not damaged.anonymous:
            with contextlib.suppress(OSError):
                damaged.path.unlink()
        try:
            return indexcache.build(self._index_dir(), damaged.sources, self._index_rows)
        except _Vanished as e:
            raise IntegrityError(f"index object {str(e)[:16]} vanished while the local "
                                 "index cache was rebuilt (gc beside us?); try again") from None

    # ----- other writers, and gc ------------------------------------------------------

    def exclude_packs(self, names: Iterable[str]) -> None:
        """Leave these packs (condemned by gc) out of the index from now on; drops them
        from a loaded index in place. Call only when nothing is pending in the packer."""
        self.excluded = frozenset(names)
        self.index.set_excluded(self.excluded)  # the compact files: at lookup time
        if not self._index_loaded or not self.excluded & self.index.packs.keys():
            return
        fresh = StoreIndex()
        for obj, packs in self.index.objects.items():
            fresh.add_object(obj, [self.index.packs[p] for p in packs
                                   if p in self.index.packs and p not in self.excluded])
        for p in list(self.index.packs.values()):  # stored by the packer, not yet in an object
            if p.name not in self.excluded:
                fresh.add_pack(p)
        fresh.set_excluded(self.excluded)
        fresh.set_bases(self.index.take_bases())  # objects (above) name their sources
        self.index.replace_with(fresh)

    def refresh_index(self) -> StoreIndex:
        """Pick up index objects other writers added since the index was loaded (sync and
        watch keep a store open for hours). If an index object we loaded is gone (gc
        consolidated it, or repair dropped damaged blobs), rebuild the whole index in
        place -- the packer keeps the same ``Index`` object -- and count it in
        ``index_rebuilds``. Call only when nothing is pending in this store's packer."""
        if not self._index_loaded:
            return self.load_index()
        known = set(self.index.objects)
        if known - set(self._index_names()):
            self.index_rebuilds += 1
            fresh = StoreIndex(rebuild=self._rebuild_compact)
            fresh.set_excluded(self.excluded)
            fresh.set_bases(*self._cover(()))
            self.index.replace_with(fresh)
            return self.index
        files, names = self._cover(known)
        self.index.set_bases(self.index.bases + files, names)
        return self.index

    def add_new_index_objects(self) -> int:
        """Load index objects other writers added since ours were loaded, only adding
        entries (safe while this store's packer is busy): two backups running at once
        dedup against each other from each other's index flushes on. Returns how many."""
        if not self._index_loaded:
            return 0
        known = set(self.index.objects)
        try:
            files, names = self._cover(known)
        except IntegrityError:
            return 0  # gone (gc) or damaged: verify reports it; dedup is only an economy
        self.index.set_bases(self.index.bases + files, names)
        return len(names)

    # ----- index objects ---------------------------------------------------------------

    def index_object(self, name: str, *, cached: bool = True
                     ) -> tuple[list[PackInfo], list[str]]:
        """One index object as stored: the packs it names and what it supersedes
        (CACHED=False: the store's copy, never the object cache's)."""
        return decode_index(self.read_object(INDEX_DIR, name, INDEX, cached=cached), name)

    def index_object_names(self) -> list[str]:
        """The names of the index objects listed now."""
        return self._index_names()

    def index_object_exists(self, name: str) -> bool:
        """Whether ``index/<name>`` is listed now (False: gone, e.g. consolidated)."""
        return self._exists(index_key(name))

    def index_mtime(self, name: str) -> float:
        """The backend's mtime of index object NAME (0.0: none, or it is gone)."""
        try:
            return self.backend.stat(index_key(name)).mtime
        except NotFound:
            return 0.0

    def read_index_object(self, name: str) -> list[PackInfo]:
        """The packs one index object names (all of them: no exclusion)."""
        return decode_index(self.read_object(INDEX_DIR, name, INDEX), name)[0]

    def write_encoded_index(self, enc: IndexEncoder, start: int) -> str:
        """Seal and put the index object ENC holds from START (``IndexEncoder.finish``);
        its name. The one writer of index objects' bytes (``write_index``, gc's
        consolidated index streamed a pack at a time)."""
        data = self.codec.seal(INDEX, enc.view(start))
        name = object_name(data)
        self.put_named(index_key(name), data)
        if self.object_cache is not None:
            self.object_cache.put_object(INDEX_DIR, name, data)
        self.index.objects[name] = enc.names  # its packs are in memory, or named
        return name

    def write_index(self, packs: list[PackInfo], supersedes: Iterable[str] = ()) -> str:
        """Write one index object naming PACKS (and superseding SUPERSEDES); its name.
        Only after the packs are durable (DESIGN §9)."""
        sup = list(supersedes)
        enc = IndexEncoder()
        for p in packs:
            enc.add(p)
        name = self.write_encoded_index(enc, enc.finish(sup))
        if not sup:  # for ``_cache_own_objects`` at close
            # durable now: its packs leave the in-memory layer for an unnamed sorted file
            # (StoreIndex.spill), so a big backup's RSS does not follow its blobs
            run = self.index.spill(name, packs, self._index_dir()) if self.cache_dir else None
            if run is not None:
                self._spilled[name] = run
            else:
                self._written[name] = packs
        return name

    def _cache_own_objects(self) -> None:
        """A compact file of the index objects this process wrote, built from their
        entries in memory and the files they were spilled to, so that the next command
        (a small backup after a big one) neither reads nor builds them. Only an
        economy: any failure leaves it to the next command's ``cover``."""
        own, self._written = self._written, {}
        spilled, self._spilled = self._spilled, {}
        directory = self._index_dir() if own or spilled else None
        if directory is None:
            return
        rows = {name: indexcache.Fetched([(p.name, p.kind, p.size, p.entries) for p in packs])
                for name, packs in own.items()}
        # the spilled files (maybe merged since) hold exactly the spilled objects' records
        have = [f for f in self.index.spilled + self.index.bases
                if f.anonymous and set(f.sources) <= spilled.keys()]
        if set().union(*(f.sources for f in have)) != spilled.keys():
            return  # moved into another file: the next command builds its own
        try:
            if not have:
                indexcache.build(directory, rows, rows.__getitem__).close()
            else:
                runs = [rows[n].as_run(n, directory) for n in sorted(rows)]
                try:
                    # a backup's process: the spill's small window, not the cache's
                    merge_files(directory, have + runs, SPILL_WINDOW).close()
                finally:
                    for r in runs:
                        r.close()
        except (CasError, OSError, ValueError):
            return
        if self.object_cache is not None:
            self.object_cache.retain(INDEX_DIR, ())  # one local copy: the file's
