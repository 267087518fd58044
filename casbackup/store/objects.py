"""An open store's objects by key: the base of ``Store`` (store.py), and with the other
modules of ``store/`` the ONLY code that calls Backend methods. Where each object lives
is ``layout.py``'s.

Invariants:
- The name of every pack, index and snapshot object is the BLAKE3 of its stored bytes
  (``ids.object_name``); ``put_named`` is exclusive, so a name is never reused, and an
  object already there under that name holds the same bytes (success).
- Every whole object ``read_object`` returns was checked: its stored bytes hash to its
  name, then unseal. Damage raises ``IntegrityError`` naming the object. Index and
  snapshot objects may come from the object cache of a remote store (``store/cache.py``),
  checked the same way; ``cached=False`` (verify, repair) reads the store's copy.
- A read of an object that is not there, or is shorter than the range asked for (an
  index entry or pack header gave it), is damage: ``IntegrityError`` naming the object,
  for every read path alike (``present``).
- Holds no index and no packer: what is here reads and lists objects by key alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..backends import local_root
from ..backends.base import Backend, ObjectInfo
from ..crypto import keys as keymod
from ..errors import AlreadyExists, IntegrityError, NotFound, OutOfRange
from ..ids import object_name
from ..scratch import Scratch
from .cache import PREFIXES as CACHED_PREFIXES
from .cache import ObjectCache
from .config import StoreConfig
from .layout import (
    INDEX_DIR,
    KEYS_DIR,
    LOCKS_DIR,
    PACKS_DIR,
    SNAPSHOTS_DIR,
    name_of,
    pack_key,
)
from .sealer import Sealer

# the kinds of object ``Store.object_names`` lists (restic's ``list`` words)
OBJECT_KINDS = {"snapshots": SNAPSHOTS_DIR, "packs": PACKS_DIR, "index": INDEX_DIR,
                "keys": KEYS_DIR, "locks": LOCKS_DIR}


class StoreObjects:
    """The objects of an open store by key: checked reads, content-named puts, listings."""

    def __init__(self, backend: Backend, config: StoreConfig, master: keymod.MasterKey,
                 url: str = "", key_name: str | None = None, *, config_bytes: bytes = b"") -> None:
        self.backend = backend
        self.config_bytes = config_bytes  # as stored: key objects bind these bytes
        self.master = master
        self._sealer = _sealer(config, master)
        self.config = config
        self.codec = self._sealer.codec
        self.url = url
        self.key_name = key_name
        self.on_warning: Callable[[str], None] | None = None  # set by the CLI, e.g. to warn()
        self.no_lock = False  # the CLI's --no-lock: reading sessions write no lock object
        # this store's local cache directory (store/cachedir.py), or None for no cache;
        # set by ``open_store`` before the first command reads anything
        self.cache_dir: Path | None = None
        # the cache of index/snapshot objects and tree blobs (store/cache.py), or None;
        # set by ``open_store`` for remote stores only
        self.object_cache: ObjectCache | None = None

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

    def put_named(self, key: str, data: bytes | memoryview) -> None:
        """Exclusive put of a content-named object (its name is the BLAKE3 of DATA): an
        existing object of that name holds the same bytes, so that is success."""
        with contextlib.suppress(AlreadyExists):  # content-addressed: same name, same bytes
            self.backend.put(key, data, overwrite=False)

    def raw(self, key: str) -> bytes:
        """The stored bytes of KEY, unchecked (``cat``)."""
        return self._get(key)

    def _get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        with present(key):
            return self.backend.get(key, offset=offset, length=length)

    def _exists(self, key: str) -> bool:
        """Whether KEY is on the backend now (one stat)."""
        try:
            self.backend.stat(key)
        except NotFound:
            return False
        return True

    # ----- packs -----------------------------------------------------------------------

    def read_pack(self, pack: str) -> bytes:
        return self._get(pack_key(pack))

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
        with present(key):
            get_into(key, offset, view)
        return view

    def pack_present(self, pack: str) -> bool:
        """Whether the pack object is on the backend now (one stat)."""
        return self._exists(pack_key(pack))

    def list_pack_objects(self) -> Iterator[ObjectInfo]:
        return self.backend.list(PACKS_DIR)

    def pack_sizes(self) -> dict[str, int]:
        """The size of every pack object on the backend, by name."""
        return {name_of(i.key): i.size for i in self.list_pack_objects()}

    # ----- listings --------------------------------------------------------------------

    def list_keys(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.backend.list(prefix)

    def object_names(self, kind: str) -> Iterator[str]:
        """The names of the objects of one ``kind`` (``OBJECT_KINDS``) as listed now."""
        return (name_of(i.key) for i in self.backend.list(OBJECT_KINDS[kind]))

    # ----- where the store is, and its sealing -----------------------------------------

    def local_path(self) -> str | None:
        """The root directory when the store is on the local backend (a hint for
        filesystem watchers), else None."""
        return local_root(self.backend)

    def local_snapshots_dir(self) -> str | None:
        """The directory of the snapshot objects when the store is local (for a watcher
        of new snapshots), else None."""
        root = self.local_path()
        return None if root is None else os.path.join(root, SNAPSHOTS_DIR.rstrip("/"))

    def sealer(self) -> Sealer:
        """This store's blob ids and sealing on their own (``Sealer.spec()`` carries them to
        a save worker process)."""
        return self._sealer

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """The BlobId of plaintext DATA (keyed BLAKE3 with this store's id key)."""
        return self.codec.blob_id(data)


@contextlib.contextmanager
def present(key: str) -> Iterator[None]:
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
