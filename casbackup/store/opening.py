"""Creating a store, and opening one: reading its config and unlocking its master key
(``Store.create`` and ``Store.open``, store.py).

Invariants:
- ``open_existing`` uses a config only if the key objects bind it
  (``keyring.unlock_master``, docs/design.md §4 key binding) and never opens as
  unencrypted a store that has key objects.
- A remembered config (``cachedir.KnownStore``) is used only when every key object the
  store lists is a remembered one, and it must open the store like the stored config
  would: if it does not, the store's own config is read and tried once.
- ``create`` validates the parameters and refuses a non-empty target before writing
  anything; the config object is written last (exclusively): from then on the store
  exists, and a store already there is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from ..backends.base import Backend
from ..crypto import keys as keymod
from ..errors import (
    AlreadyExists,
    IntegrityError,
    NotFound,
    StoreNotFound,
    UsageError,
    WrongPassword,
)
from ..ids import object_name
from .cachedir import KnownStore
from .config import StoreConfig, config_problem
from .keyring import check_empty, key_object_names, unlock_master
from .layout import CONFIG, key_object_key
from .objects import StoreObjects

PasswordSource = Callable[[], str]
S = TypeVar("S", bound=StoreObjects)


def create(cls: type[S], backend: Backend, config: StoreConfig, password: str | None,
           master: keymod.MasterKey | None, url: str, kdf_n: int) -> S:
    """A new store of CONFIG on the empty BACKEND, opened as a CLS."""
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


def open_existing(cls: type[S], backend: Backend, password: PasswordSource | None, url: str,
                  warn: Callable[[str], None] | None, known: KnownStore | None) -> S:
    """The store on BACKEND opened as a CLS (``Store.open`` says the rest)."""
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
            store = _open_config(cls, backend, raw, password, url, warn, names, known)
        except (IntegrityError, ValueError):
            if not from_cache or attempt:
                raise
            raw = None  # the remembered copy does not open it: read the store's
            continue
        if known is not None and store.config.encrypted:
            known.remember(store.config.store_id, raw)
        return store
    raise AssertionError("unreachable")


def _open_config(cls: type[S], backend: Backend, raw: bytes, password: PasswordSource | None,
                 url: str, warn: Callable[[str], None] | None, names: list[str] | None,
                 known: KnownStore | None) -> S:
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
