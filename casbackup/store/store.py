"""The Store facade: with the other modules of ``store/``, the ONLY code that calls
Backend methods. Where each object lives is ``layout.py``'s.

Invariants:
- The name of every pack, index and snapshot object is the BLAKE3 of its stored bytes
  (``ids.object_name``); puts of those are exclusive, so a name is never reused.
- Writes follow DESIGN §9: packs, then the index naming them (``flush``), then the
  snapshot. ``save_snapshot`` flushes first, so a caller cannot commit out of order.
- Every byte read back is checked: pack/index/snapshot objects by their name when read
  whole, blobs by their keyed BlobId. Damage raises ``IntegrityError`` naming the object.
  Index and snapshot objects and tree blobs may come from the object cache of a remote
  store (``store/cache.py``), checked the same way; ``verify`` and ``repair`` bypass it.
- ``open`` uses a config only if the key objects bind it (``keyring.unlock_master``,
  docs/design.md §4) and never opens as unencrypted a store that has key objects.
  ``create`` validates the parameters and refuses a non-empty target before writing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends import local_root
from ..backends.base import Backend, ObjectInfo
from ..chunking import get_chunker
from ..crypto import keys as keymod
from ..errors import (
    AlreadyExists,
    CasError,
    IntegrityError,
    NotFound,
    OutOfRange,
    StoreNotFound,
    UsageError,
    WrongPassword,
)
from ..faults import crash_point
from ..ids import DATA, INDEX, SNAPSHOT, TREE, object_name
from ..lru import LRU
from ..model.snapshot import Snapshot
from ..model.tree import Tree, decode_maps
from ..scratch import Scratch, for_thread
from . import indexcache
from .cache import PREFIXES as CACHED_PREFIXES
from .cache import ObjectCache
from .cachedir import KnownStore
from .compactindex import CompactFile, merge_files
from .config import StoreConfig, config_problem
from .index import (
    SPILL_WINDOW,
    Location,
    PackInfo,
    StoreIndex,
    decode_index,
    encode_index,
)
from .indexruns import object_run
from .keyring import check_empty, key_object_names, unlock_master
from .layout import (
    CONFIG,
    INDEX_DIR,
    KEYS_DIR,
    LOCKS_DIR,
    PACKS_DIR,
    SNAPSHOTS_DIR,
    index_key,
    key_object_key,
    name_of,
    pack_key,
    pack_temp_dir,
    snapshot_key,
)
from .pack import PackEntry, parse_header
from .packread import PackStream, read_header
from .sealer import Sealer

if TYPE_CHECKING:  # imported where used: a reading command never writes a pack
    from ..chunking import Chunker
    from .packer import Packer
    from .packsink import PackSink

PasswordSource = Callable[[], str]
SNAPSHOT_READERS = 16  # concurrent snapshot reads of a remote store (bounded)


class _Vanished(Exception):
    """An index object listed a moment ago is gone (gc consolidated it): list again."""


@dataclass(frozen=True, slots=True)
class AddResult:
    id: bytes
    added: bool
    stored: int  # sealed bytes written (0 when the blob was already present)


class Store:
    """An open store. Thread-safe for concurrent ``add_blob`` / ``get_blob``."""

    def __init__(self, backend: Backend, config: StoreConfig, master: keymod.MasterKey,
                 url: str = "", key_name: str | None = None, *, config_bytes: bytes = b"") -> None:
        self.backend = backend
        self.config_bytes = config_bytes  # as stored: key objects bind these bytes
        self.master = master
        self._sealer = _sealer(config, master)
        codec = self._sealer.codec
        self.config = config
        self.codec = codec
        self.url = url
        self.key_name = key_name
        self.index = StoreIndex()
        self._index_loaded = False
        self._packer: Packer | None = None
        self._packer_lock = threading.Lock()
        self._tree_cache: LRU[bytes, Tree] = LRU(4096)
        self._maps_cache: OrderedDict[bytes, list[dict[str, Any]]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.index_rebuilds = 0  # times refresh_index found index objects gone
        self.on_warning: Callable[[str], None] | None = None  # set by the CLI, e.g. to warn()
        self.no_lock = False  # the CLI's --no-lock: reading sessions write no lock object
        self.damaged_snapshots: dict[str, str] = {}  # name -> why, found by snapshots()
        # two-phase gc (DESIGN §8): packs condemned by pending gc records are not loaded
        # into the index, and a write session checks a snapshot before it is committed
        self.excluded: frozenset[str] = frozenset()
        self.before_commit: Callable[[Snapshot], None] | None = None
        # ... and the packer's index objects once written: (packs, name) (store/commit.py)
        self.after_index: Callable[[list[PackInfo], str], None] | None = None
        self._chunker: Chunker | None = None  # ``chunker``: built when first asked for
        # this store's local cache directory (store/cachedir.py), or None for no cache;
        # set by ``open_store`` before the first command reads anything
        self.cache_dir: Path | None = None
        # the cache of index/snapshot objects and tree blobs (store/cache.py), or None;
        # set by ``open_store`` for remote stores only
        self.object_cache: ObjectCache | None = None
        self._written: dict[str, list[PackInfo]] = {}  # index objects written, not yet cached
        self._spilled: dict[str, CompactFile] = {}  # ... and those moved out of the dicts

    # ----- creation / opening ---------------------------------------------------------

    @classmethod
    def create(cls, backend: Backend, config: StoreConfig, password: str | None,
               master: keymod.MasterKey | None = None, url: str = "",
               kdf_n: int = keymod.DEFAULT_SCRYPT_N) -> Store:
        where = url or "this location"
        problem = config_problem(config)
        if problem:
            raise UsageError(f"cannot create a store at {where}: {problem}")
        check_empty(backend, where)
        master = master or keymod.MasterKey.generate()
        key_name = None
        if not config.encrypted:
            config = replace(config, id_key=master.id_key)
        config = config.with_seed(master.chunker_seed)
        raw = config.encode()
        if config.encrypted:
            if not password:
                raise UsageError("an encrypted store needs a password (or --encryption none)")
            data = keymod.wrap(master, password, n=kdf_n, store_id=config.store_id, config=raw)
            key_name = object_name(data)
            backend.put(key_object_key(key_name), data)
        try:
            # written last: from here on the store exists
            backend.put(CONFIG, raw, overwrite=False)
        except AlreadyExists:
            raise UsageError(f"a store already exists at {where}") from None
        return cls(backend, config, master, url, key_name, config_bytes=raw)

    @classmethod
    def open(cls, backend: Backend, password: PasswordSource | None, url: str = "",
             warn: Callable[[str], None] | None = None, known: KnownStore | None = None
             ) -> Store:
        """Open the store; problems with single key objects that did not stop it from
        opening (damaged, of another store) are passed to WARN, one line each. KNOWN: the
        config and key objects remembered from an earlier open of this URL (a remote
        store: ``cachedir.KnownStore``), used when every key object the store lists is one
        of those -- then opening costs one listing of ``keys/``."""
        names: list[str] | None = None
        raw: bytes | None = None
        if known is not None and known.config is not None:
            names = key_object_names(backend)
            if known.covers(names):  # each names its store id: the same store
                raw = known.config
        for attempt in range(2):
            from_cache = raw is not None
            if raw is None:
                try:
                    raw = backend.get(CONFIG)
                except NotFound:
                    raise StoreNotFound(f"no casbackup store at {url or 'this location'}"
                                        ) from None
            try:
                store = cls._open_config(backend, raw, password, url, warn, names, known)
            except (IntegrityError, ValueError):
                if not from_cache or attempt:
                    raise
                raw = None  # the remembered copy does not open it: read the store's
                continue
            if known is not None and store.config.encrypted:
                known.remember(store.config.store_id, raw)
            return store
        raise AssertionError("unreachable")

    @classmethod
    def _open_config(cls, backend: Backend, raw: bytes, password: PasswordSource | None,
                     url: str, warn: Callable[[str], None] | None, names: list[str] | None,
                     known: KnownStore | None) -> Store:
        config = StoreConfig.decode(raw)
        if not config.encrypted:
            if names if names is not None else key_object_names(backend):
                raise IntegrityError("config says encryption none but the store has key "
                                     "objects under keys/: refusing a replaced config")
            assert config.id_key is not None  # decode checks it
            master = keymod.MasterKey(b"", config.id_key, config.chunker.seed)
            return cls(backend, config, master, url, config_bytes=raw)
        if password is None:
            raise WrongPassword("this store is encrypted: a password is needed")
        read_key = None
        if known is not None:
            sid = config.store_id

            def read_key(name: str) -> bytes:
                return known.read_key(sid, name, lambda: backend.get(key_object_key(name)))

        master, key_name = unlock_master(backend, raw, config, password(),
                                         warn or (lambda _msg: None), names, read_key)
        config = config.with_seed(master.chunker_seed)
        return cls(backend, config, master, url, key_name, config_bytes=raw)

    def close(self) -> None:
        if self._packer is not None:
            self._packer.close()
        self._cache_own_objects()
        if self.object_cache is not None:
            self.object_cache.trim()
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- index ------------------------------------------------------------------------

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
            try:
                self.backend.stat(index_key(name))
            except NotFound:
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

    def index_object_exists(self, name: str) -> bool:
        """Whether ``index/<name>`` is listed now (False: gone, e.g. consolidated)."""
        try:
            self.backend.stat(index_key(name))
        except NotFound:
            return False
        return True

    def read_index_object(self, name: str) -> list[PackInfo]:
        """The packs one index object names (all of them: no exclusion)."""
        return decode_index(self.read_object(INDEX_DIR, name, INDEX), name)[0]

    def _index_packs(self, name: str) -> list[PackInfo]:
        packs, _ = decode_index(self.read_object(INDEX_DIR, name, INDEX), name)
        return [p for p in packs if p.name not in self.excluded]

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

    def local_path(self) -> str | None:
        """The root directory when the store is on the local backend (a hint for
        filesystem watchers), else None."""
        return local_root(self.backend)

    def local_snapshots_dir(self) -> str | None:
        """The directory of the snapshot objects when the store is local (for a watcher
        of new snapshots), else None."""
        root = self.local_path()
        return None if root is None else os.path.join(root, SNAPSHOTS_DIR.rstrip("/"))

    def mark_index_loaded(self) -> None:
        """For verify, which loads index objects one by one to report each problem."""
        self._index_loaded = True

    def _write_index_object(self, packs: list[PackInfo]) -> None:
        """The packer's index write, then the write session's check (``after_index``)."""
        name = self.write_index(packs)
        if self.after_index is not None:
            self.after_index(packs, name)

    def write_index(self, packs: list[PackInfo], supersedes: Iterable[str] = ()) -> str:
        """Write one index object naming PACKS (and superseding SUPERSEDES); its name.
        Only after the packs are durable (DESIGN §5)."""
        data = self.codec.seal(INDEX, encode_index(packs, supersedes))
        name = object_name(data)
        self.put_named(index_key(name), data)
        if self.object_cache is not None:
            self.object_cache.put_object(INDEX_DIR, name, data)
        self.index.objects[name] = [p.name for p in packs]  # its packs are in memory
        if not supersedes:  # for ``_cache_own_objects`` at close
            # durable now: its packs leave the in-memory layer for an unnamed sorted file
            # (StoreIndex.spill), so a big backup's RSS does not follow its blobs
            run = self.index.spill(name, packs, self._index_dir()) if self.cache_dir else None
            if run is not None:
                self._spilled[name] = run
            else:
                self._written[name] = packs
        return name

    def reset_index(self) -> None:
        """Forget the in-memory index (after flushing and closing the packer), so the next
        ``load_index`` reads the objects now on the backend (gc or repair replaced them)."""
        if self._packer is not None:
            self._packer.flush()
            self._packer.close()
            self._packer = None
        self.index = StoreIndex()
        self._index_loaded = False
        self._tree_cache.clear()

    def put_named(self, key: str, data: bytes | memoryview) -> None:
        """Exclusive put of a content-named object (its name is the BLAKE3 of DATA): an
        existing object of that name holds the same bytes, so that is success."""
        with contextlib.suppress(AlreadyExists):  # content-addressed: same name, same bytes
            self.backend.put(key, data, overwrite=False)

    def settle_uploads(self) -> None:
        """Wait for the packer's uploads in flight, their index objects and
        ``after_index`` checks included (``Packer.settle``)."""
        if self._packer is not None:
            self._packer.settle()

    # ----- blobs ------------------------------------------------------------------------

    @property
    def packer(self) -> Packer:
        with self._packer_lock:
            stored: list[PackInfo] = []
            if self._packer is not None and self._packer.spent:
                # a failed run's reserved-but-unstored blobs must not look present; its
                # stored-but-unindexed packs still need an index object
                self._packer.close()  # uploads in flight finish (and are kept)
                stored = self._packer.take_unflushed()
                self._packer = None
            if self._packer is None:
                from .packer import Packer

                self.load_index()
                self._packer = Packer(
                    self.codec, self.index,
                    lambda n, d: self.put_named(pack_key(n), d),
                    self._write_index_object,
                    self.config.pack_size,
                    uploaders=max(1, min(4, self.backend.properties().connections)),
                    open_sink=self._stream_sink_factory(),
                )
                self._packer.adopt_unflushed(stored)
            return self._packer

    def _stream_sink_factory(self) -> Callable[[], PackSink] | None:
        """Backends that can write an object in place (local) get packs streamed to
        them instead of held in memory."""
        temp_writer = getattr(self.backend, "temp_writer", None)
        if temp_writer is None:
            return None
        from .packsink import StreamSink

        return lambda: StreamSink(temp_writer(pack_temp_dir()))

    @property
    def chunker(self) -> Chunker:
        """The store's chunker (config-checked at open), built on first use: a command
        that reads the store never imports the chunking extension."""
        if self._chunker is None:
            self._chunker = get_chunker(self.config.chunker)
        return self._chunker

    def has_blob(self, blob_id: bytes) -> bool:
        return blob_id in self.index

    def add_blob(
        self, kind: str, data: bytes | memoryview, blob_id: bytes | None = None
    ) -> AddResult:
        """Store a blob unless present; safe to call from many threads."""
        bid = blob_id if blob_id is not None else self.codec.blob_id(data)
        packer = self.packer
        if not packer.reserve(bid):
            return AddResult(bid, False, 0)
        # Sealed in this thread's reused buffer (scratch.py; a blob too big for it to keep
        # gets a buffer of its own); the packer copies the bytes out before ``add`` returns.
        view = self.codec.seal_into(kind, data, for_thread("seal"))
        if kind == TREE and self.object_cache is not None:
            self.object_cache.put_tree(bid, len(data), view)
        packer.add(kind, bid, view, len(data))
        return AddResult(bid, True, len(view))

    def add_blobs(self, kind: str, datas: list[bytes]) -> list[AddResult]:
        """``add_blob`` for a batch (many small files): two packer lock rounds in all."""
        ids = [self.codec.blob_id(d) for d in datas]
        packer = self.packer
        new = packer.reserve_many(ids)
        sealed: list[tuple[bytes, bytes, int]] = []
        out = []
        for bid, data, is_new in zip(ids, datas, new, strict=True):
            if is_new:
                s = self.codec.seal(kind, data)
                if kind == TREE and self.object_cache is not None:
                    self.object_cache.put_tree(bid, len(data), s)
                sealed.append((bid, s, len(data)))
                out.append(AddResult(bid, True, len(s)))
            else:
                out.append(AddResult(bid, False, 0))
        if sealed:
            packer.add_many(kind, sealed)
        return out

    def add_sealed(self, kind: str, blobs: list[tuple[bytes, bytes, int]]) -> list[bool]:
        """Store blobs sealed elsewhere (``(id, sealed, raw_length)``, by ``sealer()``'s
        twin in a save worker process) unless present: the same reserve and pack as
        ``add_blobs``, two packer lock rounds. True for each blob stored now."""
        packer = self.packer
        new = packer.reserve_many([b[0] for b in blobs])
        keep = [b for b, is_new in zip(blobs, new, strict=True) if is_new]
        if kind == TREE and self.object_cache is not None:
            for bid, s, n in keep:
                self.object_cache.put_tree(bid, n, s)
        if keep:
            packer.add_many(kind, keep)
        return new

    def sealer(self) -> Sealer:
        """This store's blob ids and sealing on their own (``Sealer.spec()`` carries them to
        a save worker process)."""
        return self._sealer

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """The BlobId of plaintext DATA (keyed BLAKE3 with this store's id key)."""
        return self.codec.blob_id(data)

    def parallel_reads(self) -> int:
        """How many pack reads pay to run at once: 2 on a local disk (restore with 4
        measured the same speed and 10-15 MiB more peak RSS: each reader holds its
        buffers), 4 on a remote store, to hide the latency of each request."""
        return 2 if self.backend.properties().is_local else 4

    def flush(self) -> None:
        if self._packer is not None:
            self._packer.flush()

    def get_blob(self, blob_id: bytes) -> bytes:
        loc = self.load_index().lookup(blob_id)
        e = loc.entry
        sealed = self._get(pack_key(loc.pack), offset=e.offset, length=e.length)
        try:
            return self.unseal_entry(e, sealed)
        except IntegrityError as err:
            raise IntegrityError(f"pack {loc.pack[:16]}: {err}") from None

    def iter_blobs(self, ids: Iterable[bytes], ahead: int = 4) -> Generator[bytes, None, None]:
        """The checked plaintexts of blobs IDS in order (a file's content), reading up to
        AHEAD blobs ahead on threads: at most AHEAD + 1 blobs are held at once, whatever
        the number of IDS. A blob repeated right after itself (zero runs) is read once."""
        from concurrent.futures import Future, ThreadPoolExecutor

        it = iter(ids)
        queue: deque[tuple[bytes, Future[bytes] | None]] = deque()
        with ThreadPoolExecutor(max_workers=min(ahead, self.parallel_reads())) as pool:
            try:
                last = None
                for bid in it:
                    queue.append((bid, None if bid == last else pool.submit(self.get_blob, bid)))
                    last = bid
                    if len(queue) > ahead:
                        break
                data = b""
                while queue:
                    bid, fut = queue.popleft()
                    if fut is not None:
                        data = b""  # the previous blob goes before the next is awaited
                        data = fut.result()
                    yield data
                    nxt = next(it, None)
                    if nxt is not None:
                        queue.append((nxt, None if nxt == last else
                                      pool.submit(self.get_blob, nxt)))
                        last = nxt
            finally:
                for _, fut in queue:
                    if fut is not None:
                        fut.cancel()

    def locate(self, blob_id: bytes) -> Location:
        return self.load_index().lookup(blob_id)

    def read_pack_range(self, pack: str, offset: int, length: int) -> bytes:
        return self._get(pack_key(pack), offset=offset, length=length)

    def read_pack_range_view(self, pack: str, offset: int, length: int,
                             scratch: Scratch) -> memoryview:
        """``read_pack_range`` into SCRATCH where the backend can (``get_into``; the view
        is valid until SCRATCH is reused), else a fresh copy."""
        get_into = getattr(self.backend, "get_into", None)
        if get_into is None:
            return memoryview(self.read_pack_range(pack, offset, length))
        view = scratch.view(length)
        key = pack_key(pack)
        with _present(key):
            get_into(key, offset, view)
        return view

    def pack_present(self, pack: str) -> bool:
        """Whether the pack object is on the backend now (one stat)."""
        try:
            self.backend.stat(pack_key(pack))
        except NotFound:
            return False
        return True

    def index_mtime(self, name: str) -> float:
        """The backend's mtime of index object NAME (0.0: none, or it is gone)."""
        try:
            return self.backend.stat(index_key(name)).mtime
        except NotFound:
            return 0.0

    def read_pack(self, pack: str) -> bytes:
        return self._get(pack_key(pack))

    def unseal_entry(self, entry: PackEntry, sealed: bytes | memoryview) -> bytes:
        return self.codec.unseal_blob(entry.kind, entry.id, sealed, entry.raw_length)

    def unseal_entry_into(self, entry: PackEntry, sealed: bytes | memoryview,
                          scratch: Scratch) -> bytes | memoryview:
        """``unseal_entry`` decrypting into SCRATCH (``Codec.unseal_blob_into``)."""
        return self.codec.unseal_blob_into(entry.kind, entry.id, sealed, entry.raw_length,
                                           scratch)

    def stream_blobs(self, pack: str, entries: Iterable[PackEntry], *,
                     size: int | None = None, whole: int | None = None,
                     unseal: bool = True) -> PackStream:
        """The blobs ENTRIES of PACK, read in coalesced ranges, each unsealed and checked
        against its BlobId (``packread.py``). SIZE: the pack's size on the backend, when
        known (an entry past it is yielded as truncated, unread); WHOLE: the pack's size,
        to read every byte of it and ``finish()`` with its hash and header."""
        return PackStream(self, pack, entries, size=size, whole=whole, unseal=unseal)

    def read_pack_header(self, pack: str, size: int) -> list[PackEntry]:
        """A pack's entries from its trailer and header alone (two ranged reads)."""
        return read_header(self, pack, size)

    def pack_entries(self, pack: str, data: bytes | None = None) -> list[PackEntry]:
        return parse_header(self.codec, data if data is not None else self.read_pack(pack), pack)

    def list_pack_objects(self) -> Iterator[ObjectInfo]:
        return self.backend.list(PACKS_DIR)

    def pack_sizes(self) -> dict[str, int]:
        """The size of every pack object on the backend, by name."""
        return {name_of(i.key): i.size for i in self.list_pack_objects()}

    def _get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        with _present(key):
            return self.backend.get(key, offset=offset, length=length)

    # ----- trees -----------------------------------------------------------------------

    def load_tree(self, tree_id: bytes) -> Tree:
        t = self._tree_cache.get(tree_id)
        if t is None:
            t = Tree.decode(self.tree_blob(tree_id), tree_id)
            self._tree_cache.put(tree_id, t)
        return t

    def load_tree_maps(self, tree_id: bytes) -> list[dict[str, Any]]:
        """The raw node maps of a tree (for backup's comparison with its parent)."""
        with self._cache_lock:
            t = self._maps_cache.get(tree_id)
            if t is not None:
                return t
        t = decode_maps(self.tree_blob(tree_id), tree_id)
        with self._cache_lock:
            self._maps_cache[tree_id] = t
            if len(self._maps_cache) > 64:  # a backup reads each parent tree once: a
                self._maps_cache.popitem(last=False)  # big cache only held the whole tree
        return t

    def tree_blob(self, tree_id: bytes) -> bytes:
        """The checked plaintext of tree blob TREE_ID: from the object cache when it
        holds the blob and it passes the BlobId check (else the entry is dropped), from
        the store otherwise (and then kept in the cache)."""
        cache = self.object_cache
        if cache is None:
            return self.get_blob(tree_id)
        hit = cache.get_tree(tree_id)
        if hit is not None:
            try:
                return self.codec.unseal_blob(TREE, tree_id, hit[1], hit[0])
            except IntegrityError:
                cache.drop_tree(tree_id)  # damaged or of another key: refetch
        loc = self.load_index().lookup(tree_id)
        e = loc.entry
        sealed = self._get(pack_key(loc.pack), offset=e.offset, length=e.length)
        try:
            out = self.codec.unseal_blob(e.kind, tree_id, sealed, e.raw_length)
        except IntegrityError as err:
            raise IntegrityError(f"pack {loc.pack[:16]}: {err}") from None
        if e.kind == TREE:
            cache.put_tree(tree_id, e.raw_length, sealed)
        return out

    # ----- whole objects ---------------------------------------------------------------

    def read_object(self, prefix: str, name: str, kind: str, *, cached: bool = True) -> bytes:
        """Read a sealed, content-named object, check its name, and unseal it. Index and
        snapshot objects come from the object cache when it holds a copy that hashes to
        NAME (and go into it when read from the store); CACHED=False reads the store
        (verify and repair check what the store holds)."""
        cache = self.object_cache if cached and prefix in CACHED_PREFIXES else None
        data = cache.get_object(prefix, name) if cache is not None else None
        if data is None:
            data = self._get(f"{prefix}{name}")
            if object_name(data) != name:
                raise IntegrityError(f"object {prefix}{name} does not hash to its name "
                                     "(damaged)")
            if cache is not None:
                cache.put_object(prefix, name, data)
        try:
            return self.codec.unseal(kind, data)
        except IntegrityError as e:
            raise IntegrityError(f"object {prefix}{name}: {e}") from None

    # ----- snapshots -------------------------------------------------------------------

    def save_snapshot(self, snap: Snapshot) -> str:
        self.flush()  # packs and index first: the snapshot is the commit point
        if self.before_commit is not None:
            self.before_commit(snap)  # the write session's gc check (store/commit.py)
        data = self.codec.seal(SNAPSHOT, snap.encode())
        name = object_name(data)
        self.put_named(snapshot_key(name), data)
        if self.object_cache is not None:
            self.object_cache.put_object(SNAPSHOTS_DIR, name, data)
        snap.id = name
        return name

    def snapshot_ids(self) -> list[str]:
        # each once: a listing that repeats a key (a non-conforming S3 clone) must not
        # make one snapshot two (forget --keep-last 1 deleted the one it kept)
        return list(dict.fromkeys(name_of(i.key) for i in self.backend.list(SNAPSHOTS_DIR)))

    def load_snapshot(self, name: str, *, cached: bool = True) -> Snapshot:
        crash_point("store:load-snapshot")
        return Snapshot.decode(self.read_object(SNAPSHOTS_DIR, name, SNAPSHOT, cached=cached),
                               name)

    def snapshots(self) -> list[Snapshot]:
        """Every readable snapshot, oldest first. A damaged snapshot object (it does not
        hash to its name, unseal or decode) is left out, recorded in ``damaged_snapshots``
        and reported once through ``on_warning``; one deleted meanwhile is left out."""
        snaps = []
        names = self.snapshot_ids()
        if self.object_cache is not None:
            self.object_cache.retain(SNAPSHOTS_DIR, names)

        def load(name: str) -> Snapshot | None:
            try:
                return self.load_snapshot(name)
            except NotFound:
                return None  # forgotten by someone else since the listing
            except IntegrityError as e:
                self._damaged_snapshot(name, str(e))
                return None

        for snap in self._map_reads(load, names):
            if snap is not None:
                snaps.append(snap)
        snaps.sort(key=lambda s: (s.time, s.id))
        return snaps

    def _map_reads(self, fn: Callable[[str], Snapshot | None], names: list[str]
                   ) -> Iterator[Snapshot | None]:
        """FN over NAMES: in this thread on a local store, else on up to the backend's
        connection count of threads (``SNAPSHOT_READERS`` at most), so a first
        ``snapshots`` of a remote store waits for about one round trip per that many
        snapshots, not one per snapshot. Results in the order of NAMES."""
        props = self.backend.properties()
        workers = min(SNAPSHOT_READERS, max(1, props.connections), len(names))
        if props.is_local or workers <= 1:
            yield from map(fn, names)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snap") as pool:
            yield from pool.map(fn, names)

    def _damaged_snapshot(self, name: str, why: str) -> None:
        if name not in self.damaged_snapshots and self.on_warning is not None:
            self.on_warning(f"{snapshot_key(name)} is damaged and was skipped ({why}); "
                            "`casbackup repair` or `forget` it to remove it")
        self.damaged_snapshots[name] = why

    def delete_snapshot(self, name: str) -> None:
        self.backend.delete(snapshot_key(name))

    # ----- raw access for `cat` ----------------------------------------------------------

    def raw(self, key: str) -> bytes:
        return self._get(key)

    def index_object(self, name: str, *, cached: bool = True
                     ) -> tuple[list[PackInfo], list[str]]:
        """One index object as stored: the packs it names and what it supersedes
        (CACHED=False: the store's copy, never the object cache's)."""
        return decode_index(self.read_object(INDEX_DIR, name, INDEX, cached=cached), name)

    def index_object_names(self) -> list[str]:
        """The names of the index objects listed now."""
        return self._index_names()

    def list_keys(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.backend.list(prefix)

    def object_names(self, kind: str) -> Iterator[str]:
        """The names of the objects of one ``kind`` (``OBJECT_KINDS``) as listed now."""
        return (name_of(i.key) for i in self.backend.list(OBJECT_KINDS[kind]))


# the kinds of object ``Store.object_names`` lists (restic's ``list`` words)
OBJECT_KINDS = {"snapshots": SNAPSHOTS_DIR, "packs": PACKS_DIR, "index": INDEX_DIR,
                "keys": KEYS_DIR, "locks": LOCKS_DIR}


@contextlib.contextmanager
def _present(key: str) -> Iterator[None]:
    """A read of KEY: an object that is not there, or shorter than the range an index
    entry or pack header gives, is damage (``IntegrityError`` naming it), for every read
    path alike."""
    try:
        yield
    except NotFound:
        raise IntegrityError(f"object {key} is missing") from None
    except OutOfRange as e:
        raise IntegrityError(f"object {key} is shorter than its index says ({e})") from None


def _sealer(config: StoreConfig, master: keymod.MasterKey) -> Sealer:
    enc = master.enc_key if config.encrypted else None
    cipher = config.encryption if config.encrypted else "aes-256-gcm"
    return Sealer.of(master.id_key, enc, cipher, config.compression_level)


__all__ = ["Store", "StoreConfig", "AddResult", "DATA", "TREE", "pack_key"]
