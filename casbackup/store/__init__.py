"""The store layer: the only code that calls Backend methods (see store.py).

``open_store(url, password)`` and ``init_store(url, …)`` are the entry points for
``ops``, ``cli`` and ``daemon``, which never import ``casbackup.backends``.

This package is the store's public face (tests/unit/test_layers.py holds cli/, daemon/
and ops/ to it and to the public modules ``locks``, ``commit``, ``identity``,
``gcrecords`` and ``keyring``): ``Store``; the pack reader's types (``PackEntry``,
``PackStream``, ``BlobRead``, ``PackEnd``: ``Store.stream_blobs``); the maintenance
interface (``maintainer(store)``: ``Maintenance``, ``Repacker``, ``LiveBlob``, listings
as ``ObjectInfo``, packs as ``PackInfo``); the read-only index view for whole-store passes
(``blob_table(store)``: ``BlobTable``) and the streaming check of one index object
(``check_index_object``); object names for messages (``pack_key``, ``index_key``,
``snapshot_key``); ``paired_key`` for ``init --from``; ``Sealer`` (``Store.sealer()``:
blob ids and sealing for a save worker process, ops/save_pool.py). Pack format, layout, codec, index
internals and backends stay behind it; ops declare the narrow Protocols they consume in
``ops/capabilities.py``. The maintenance interface, ``BlobTable``, ``maybe_consolidate``
and ``check_index_object`` are imported on first use (``__getattr__``): a command that
uses none of them loads none of their code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..backends.base import ObjectInfo
from ..chunking import ChunkerParams
from ..crypto import keys as keymod
from ..errors import UsageError
from .cache import ObjectCache
from .cachedir import (
    CacheSettings,
    KnownStore,
    list_store_caches,
    remove_store_cache,
    store_cache_dir,
)
from .config import StoreConfig
from .index import PackColumns, PackInfo
from .layout import index_key, pack_key, snapshot_key
from .pack import PackEntry
from .packread import BlobRead, PackEnd, PackStream
from .sealer import Sealer
from .store import OBJECT_KINDS, AddResult, PasswordSource, Store

if TYPE_CHECKING:
    from ..backends.retry import RetryEvent
    from .blobtable import BlobTable
    from .consolidate import OPERATION as CONSOLIDATE_OPERATION
    from .consolidate import maybe_consolidate
    from .indexcheck import check_index_object
    from .maintenance import LiveBlob, Maintenance, Repacker

# names imported on first use (PEP 562): what only maintenance, gc, verify or a remote
# store needs is not loaded by every command (fixed cost: implementation note, design.md §11)
_LAZY = {"BlobTable": "blobtable", "maybe_consolidate": "consolidate",
         "check_index_object": "indexcheck", "LiveBlob": "maintenance",
         "Maintenance": "maintenance", "Repacker": "maintenance",
         "CONSOLIDATE_OPERATION": "consolidate:OPERATION"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, _, attr = module.partition(":")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr or name)
    globals()[name] = value
    return value


ENCRYPTIONS = ("repokey", "repokey-aes", "repokey-chacha", "none")


def open_backend(url: str):  # type: ignore[no-untyped-def]
    from ..backends import open_backend as _open

    return _open(url)


def check_url(url: str) -> None:
    """``UsageError``, not repeating it, when a store URL carries credentials (for
    configuration checks that want to refuse such a URL before any store is opened)."""
    from ..backends import refuse_credentials

    refuse_credentials(url)


def open_store(url: str, password: PasswordSource | None,
               warn: Callable[[str], None] | None = None,
               cache: CacheSettings | None = None) -> Store:
    """Open the store at URL; WARN gets one line per key object skipped on the way.
    CACHE is where its local cache lives (``CacheSettings.default()`` when None; pass
    ``CacheSettings.disabled()`` for none). Only a remote store gets an object cache
    (store/cache.py): for a local directory reading the store costs what reading the
    cache would, and writing the copies only slowed backups (measured: docs/design.md)."""
    settings = cache or CacheSettings.default()
    backend = open_backend(url)
    remote = not backend.properties().is_local
    known = (KnownStore(settings.directory, url)
             if remote and settings.directory is not None else None)
    store = Store.open(backend, password, url, warn, known)
    store.cache_dir = store_cache_dir(settings, store.config.store_id)
    if store.cache_dir is not None and remote:
        store.object_cache = ObjectCache(store.cache_dir, settings.tree_limit)
    return store


def init_store(
    url: str,
    password: str | None,
    *,
    encryption: str = "repokey",
    pack_size: int | None = None,
    compression_level: int = 3,
    kdf_n: int = keymod.DEFAULT_SCRYPT_N,
    master: keymod.MasterKey | None = None,
    chunker: ChunkerParams | None = None,
) -> Store:
    if encryption in ("repokey", "repokey-aes"):
        cipher = "aes-256-gcm"
    elif encryption == "repokey-chacha":
        cipher = "chacha20-poly1305"
    elif encryption == "none":
        cipher = "none"
    else:
        raise UsageError(f"unknown encryption {encryption!r} (choose {', '.join(ENCRYPTIONS)})")
    kw: dict[str, int] = {"compression_level": compression_level}
    if pack_size is not None:
        kw["pack_size"] = pack_size
    config = StoreConfig.new(cipher, **kw)
    if chunker is not None:  # `init --from`: the same cut points as the source store
        config = replace(config, chunker=chunker)
    backend = open_backend(url)
    return Store.create(backend, config, password, master=master, url=url, kdf_n=kdf_n)


def maintainer(store: Store) -> Maintenance:
    """The maintenance interface of STORE (gc, repair): listing, deleting, repacking, and
    writing consolidated index objects (``store/maintenance.py``)."""
    from .maintenance import Maintenance

    return Maintenance(store)


def blob_table(store: Store) -> BlobTable:
    """The read-only columnar view of STORE's whole index as loaded now (``load_index``:
    compact files, checked whole; see store/blobtable.py), for gc and verify: numpy over
    the mapped records, no Python object per blob."""
    from .blobtable import BlobTable

    return BlobTable.of(store.load_index())


def paired_key(src: Store, copy_master_key: bool = False
               ) -> tuple[keymod.MasterKey, ChunkerParams]:
    """The master key and chunker for a new store paired with ``src`` (``init --from``):
    the same id key, chunker seed and chunk sizes; a new encryption key unless
    ``copy_master_key`` (an unencrypted source has none to copy)."""
    m = src.master
    enc = m.enc_key if copy_master_key and m.enc_key else os.urandom(32)
    return keymod.MasterKey(enc, m.id_key, m.chunker_seed), src.config.chunker
def on_retry(fn: Callable[[RetryEvent], None] | None) -> None:
    """Report every backend retry of this process to ``fn`` (``cli`` prints them)."""
    from ..backends.retry import set_retry_listener

    set_retry_listener(fn)


def backend_retries() -> int:
    """Backend requests retried in this process so far (the job metrics count them)."""
    from ..backends.retry import retries_so_far

    return retries_so_far()


__all__ = ["Store", "OBJECT_KINDS", "AddResult", "StoreConfig", "open_store", "init_store",
           "ENCRYPTIONS", "maybe_consolidate", "on_retry", "RetryEvent", "list_store_caches",
           "remove_store_cache",
           "check_url", "backend_retries", "CacheSettings", "PackEntry", "BlobRead", "PackEnd",
           "PackStream", "pack_key", "index_key", "snapshot_key", "maintainer", "ObjectInfo",
           "Maintenance", "Repacker", "LiveBlob", "paired_key", "PackInfo", "PackColumns",
           "BlobTable",
           "blob_table", "check_index_object", "CONSOLIDATE_OPERATION", "Sealer"]
