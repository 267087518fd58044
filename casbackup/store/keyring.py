"""The store's key objects (``keys/<id>``): one wrapped master key per passphrase.

Invariants: a store always keeps at least one key object (removing the last is
refused); a passphrase change adds the new key object *before* removing the old one, so
there is never a moment without a key; key objects are named by the BLAKE3 of their
bytes like every other object. Only this module and ``Store.open`` read ``keys/``.

Opening (``unlock_master``, docs/design.md §4): key objects are tried in name order. One
that is damaged (bad bytes, scrypt parameters out of bounds, a name that is not its
hash) or names another store is skipped with a warning, never tried, never fatal while
another key opens. A key that opens must bind this store's id and config bytes (its own
``binding``, or for a version-1 key, the binding of any version-2 key of the store);
one that does not is skipped too. When no key opens: ``IntegrityError`` naming the
config if a key opened but did not match it, or if no key object was usable at all;
else ``WrongPassword``. New key objects are always version 2 (bound).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..backends import local_root
from ..backends.base import Backend, is_temp_name
from ..crypto import keys as keymod
from ..errors import IntegrityError, NotFound, UsageError, WrongPassword
from ..ids import object_name
from .config import StoreConfig
from .layout import CONFIG, KEYS_DIR, key_object_key, name_of


class KeyedStore(Protocol):
    """What managing key objects needs of an open store (``Store`` is one); keyring does
    not import store.py, whose opening.py imports keyring to open a store."""

    backend: Backend
    master: keymod.MasterKey
    config: StoreConfig
    config_bytes: bytes

    def raw(self, key: str) -> bytes: ...


@dataclass
class _Tally:
    damaged: int = 0
    foreign: int = 0
    unmatched: str | None = None  # a key that opened but did not bind this config


def key_object_names(backend: Backend) -> list[str]:
    return sorted(name_of(i.key) for i in backend.list(KEYS_DIR))


def unlock_master(backend: Backend, config_bytes: bytes, config: StoreConfig, password: str,
                  warn: Callable[[str], None], names: list[str] | None = None,
                  read_key: Callable[[str], bytes] | None = None
                  ) -> tuple[keymod.MasterKey, str]:
    """The master key that ``password`` opens, and the name of its key object. NAMES:
    the key objects listed (when the caller just listed them); READ_KEY: how a key
    object's bytes are read (a cached copy, ``cachedir.KnownStore``; the store's own read
    by default) -- every copy is checked against its name all the same."""
    names = key_object_names(backend) if names is None else names
    if not names:
        raise IntegrityError("the store has no key objects (keys/ is empty)")
    tally = _Tally()
    read = read_key or (lambda name: backend.get(key_object_key(name)))
    usable = dict(_usable_keys(read, names, config.store_id, warn, tally))
    bound = [k.binding for k in usable.values() if k.binding is not None]
    for name, key in usable.items():
        try:
            master = keymod.unwrap(key, password)
        except WrongPassword:
            continue
        except IntegrityError as e:
            warn(f"key object keys/{name[:16]} is damaged, skipped: {e}")
            continue
        tags = [key.binding] if key.binding is not None else bound
        if not tags or any(keymod.binding_matches(master, t, config.store_id, config_bytes)
                           for t in tags):
            if tally.unmatched:  # else the error below names it
                warn(f"key object keys/{tally.unmatched[:16]} opens but does not match "
                     "this store's config: skipped (another store's key?)")
            return master, name
        tally.unmatched = tally.unmatched or name
    if tally.unmatched:
        raise IntegrityError(f"config does not match key object keys/{tally.unmatched[:16]}: "
                             "the config was replaced or edited, or the key is another "
                             "store's")
    if not usable:
        raise IntegrityError(f"no usable key object for config (store {config.store_id[:8]}): "
                             f"{tally.damaged} damaged, {tally.foreign} of another store")
    raise WrongPassword("wrong password or no key found for it")


def _usable_keys(read: Callable[[str], bytes], names: list[str], store_id: str,
                 warn: Callable[[str], None],
                 tally: _Tally) -> Iterator[tuple[str, keymod.KeyObject]]:
    for name in names:
        try:
            data = read(name)
        except NotFound:
            continue  # removed while we listed (key passwd elsewhere)
        try:
            if object_name(data) != name:
                raise IntegrityError("it does not hash to its name")
            key = keymod.parse(data)
        except IntegrityError as e:
            warn(f"key object keys/{name[:16]} is damaged, skipped: {e}")
            tally.damaged += 1
            continue
        if key.store_id is not None and key.store_id != store_id:
            warn(f"key object keys/{name[:16]} belongs to another store "
                 f"({key.store_id[:8]}), skipped")
            tally.foreign += 1
            continue
        yield name, key


def check_empty(backend: Backend, where: str) -> None:
    """Refuse to create a store where one exists or where other files are (a crashed
    init's key objects are all that may be there)."""
    try:
        backend.stat(CONFIG)
        raise UsageError(f"a store already exists at {where}")
    except NotFound:
        pass
    root = local_root(backend)
    if root is not None and _local_entries(root, where) - {"keys"} or any(
            not info.key.startswith(KEYS_DIR) for info in backend.list("")):
        raise UsageError(f"{where} is not empty and not a casbackup store: refusing to "
                         "create a store in it")


def _local_entries(root: str, where: str) -> set[str]:
    """The names in a local store's directory, any type (``list`` shows only files)."""
    import os

    try:
        return {e for e in os.listdir(root) if not is_temp_name(e)}
    except (FileNotFoundError, NotADirectoryError):
        return set()  # not a directory: the first put says so
    except OSError as e:
        raise UsageError(f"cannot read {where}: {e.strerror}") from None


def key_names(store: KeyedStore) -> list[str]:
    return key_object_names(store.backend)


def describe_key(store: KeyedStore, name: str) -> dict[str, object]:
    try:
        return keymod.describe(store.raw(key_object_key(name)))
    except IntegrityError as e:
        return {"damaged": str(e)}


def add_key(store: KeyedStore, password: str, kdf_n: int = keymod.DEFAULT_SCRYPT_N) -> str:
    if not store.config.encrypted:
        raise UsageError("this store is not encrypted: it has no keys")
    data = keymod.wrap(store.master, password, n=kdf_n, store_id=store.config.store_id,
                       config=store.config_bytes)
    name = object_name(data)
    store.backend.put(key_object_key(name), data)
    return name


def remove_key(store: KeyedStore, name: str) -> None:
    names = key_names(store)
    if name not in names:
        raise UsageError(f"no key {name[:16]} in this store")
    if len(names) == 1:
        raise UsageError("refusing to remove the last key: the store would be unreadable")
    store.backend.delete(key_object_key(name))
