"""The Store facade: one open store, composed of its layers, each a module of one job
(with the other modules of ``store/``, the ONLY code that calls Backend methods):

- ``objects.py``: objects by key -- checked reads, content-named puts, listings;
- ``indexing.py``: the index -- loading, refreshing, gc's exclusions, index objects;
- ``reading.py``: the read path -- blobs, trees and packs, checked;
- ``snapshots.py``: snapshot objects -- listing, reading, deleting;
- ``opening.py``: creating a store and opening one (config, key objects);
- ``writer.py``: the write path (packer), built on the first write and imported only then.

Invariants:
- Writes follow DESIGN §9: packs, then the index naming them (``flush``), then the
  snapshot. ``save_snapshot`` flushes first and runs the write session's check
  (``before_commit``) before the snapshot is put, so a caller cannot commit out of order.
- Every byte read back is checked (see each layer); damage raises ``IntegrityError``
  naming the object.
- A command that never writes never builds a writer nor imports ``writer.py``, the
  packer or the chunking extension (tests/unit/test_imports.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..backends.base import Backend
from ..chunking import get_chunker
from ..crypto import keys as keymod
from ..ids import DATA, TREE
from ..model.snapshot import Snapshot
from . import opening
from .addresult import AddResult
from .cachedir import KnownStore
from .config import StoreConfig
from .index import StoreIndex
from .layout import pack_key
from .objects import OBJECT_KINDS
from .opening import PasswordSource
from .reading import StoreReads
from .snapshots import SNAPSHOT_READERS, StoreSnapshots

if TYPE_CHECKING:  # imported where used: a reading command never writes a pack
    from ..chunking import Chunker
    from .packer import Packer
    from .writer import BlobWriter


class Store(StoreReads, StoreSnapshots):
    """An open store. Thread-safe for concurrent ``add_blob`` / ``get_blob``."""

    def __init__(self, backend: Backend, config: StoreConfig, master: keymod.MasterKey,
                 url: str = "", key_name: str | None = None, *, config_bytes: bytes = b"") -> None:
        super().__init__(backend, config, master, url, key_name, config_bytes=config_bytes)
        # a write session's gc check of a snapshot before it is committed (store/commit.py)
        self.before_commit: Callable[[Snapshot], None] | None = None
        self._chunker: Chunker | None = None  # ``chunker``: built when first asked for
        self._writer: BlobWriter | None = None  # ``_blob_writer``: built on the first write
        self._writer_lock = threading.Lock()

    # ----- creation / opening ---------------------------------------------------------

    @classmethod
    def create(cls, backend: Backend, config: StoreConfig, password: str | None,
               master: keymod.MasterKey | None = None, url: str = "",
               kdf_n: int = keymod.DEFAULT_SCRYPT_N) -> Store:
        return opening.create(cls, backend, config, password, master, url, kdf_n)

    @classmethod
    def open(cls, backend: Backend, password: PasswordSource | None, url: str = "",
             warn: Callable[[str], None] | None = None, known: KnownStore | None = None
             ) -> Store:
        """Open the store; problems with single key objects that did not stop it from
        opening (damaged, of another store) are passed to WARN, one line each. KNOWN: the
        config and key objects remembered from an earlier open of this URL (a remote
        store: ``cachedir.KnownStore``), used when every key object the store lists is one
        of those -- then opening costs one listing of ``keys/``."""
        return opening.open_existing(cls, backend, password, url, warn, known)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._cache_own_objects()
        if self.object_cache is not None:
            self.object_cache.trim()
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- writing --------------------------------------------------------------------

    def _blob_writer(self) -> BlobWriter:
        writer = self._writer
        if writer is None:
            with self._writer_lock:
                if self._writer is None:
                    from .writer import BlobWriter

                    self._writer = BlobWriter(self)
                writer = self._writer
        return writer

    @property
    def packer(self) -> Packer:
        return self._blob_writer().packer

    @property
    def chunker(self) -> Chunker:
        """The store's chunker (config-checked at open), built on first use: a command
        that reads the store never imports the chunking extension."""
        if self._chunker is None:
            self._chunker = get_chunker(self.config.chunker)
        return self._chunker

    def add_blob(
        self, kind: str, data: bytes | memoryview, blob_id: bytes | None = None
    ) -> AddResult:
        """Store a blob unless present; safe to call from many threads."""
        return self._blob_writer().add_blob(kind, data, blob_id)

    def add_blobs(self, kind: str, datas: list[bytes]) -> list[AddResult]:
        """``add_blob`` for a batch (many small files): two packer lock rounds in all."""
        return self._blob_writer().add_blobs(kind, datas)

    def add_sealed(self, kind: str, blobs: list[tuple[bytes, bytes, int]]) -> list[bool]:
        """Store blobs sealed elsewhere (``(id, sealed, raw_length)``, by ``sealer()``'s
        twin in a save worker process) unless present: the same reserve and pack as
        ``add_blobs``, two packer lock rounds. True for each blob stored now."""
        return self._blob_writer().add_sealed(kind, blobs)

    def settle_uploads(self) -> None:
        """Wait for the packer's uploads in flight (``BlobWriter.settle``); nothing when
        nothing was written."""
        if self._writer is not None:
            self._writer.settle()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def save_snapshot(self, snap: Snapshot) -> str:
        self.flush()  # packs and index first: the snapshot is the commit point
        if self.before_commit is not None:
            self.before_commit(snap)  # the write session's gc check (store/commit.py)
        return self._put_snapshot(snap)

    def reset_index(self) -> None:
        """Forget the in-memory index (after flushing and closing the packer), so the next
        ``load_index`` reads the objects now on the backend (gc or repair replaced them)."""
        if self._writer is not None:
            self._writer.discard()
        self.index = StoreIndex()
        self._index_loaded = False
        self._tree_cache.clear()


__all__ = ["Store", "StoreConfig", "AddResult", "DATA", "TREE", "pack_key", "OBJECT_KINDS",
           "PasswordSource", "SNAPSHOT_READERS"]
