"""The store's key objects (``keys/<id>``): one wrapped master key per passphrase.

Invariants: a store always keeps at least one key object (removing the last is
refused); a passphrase change adds the new key object *before* removing the old one, so
there is never a moment without a key; key objects are named by the BLAKE3 of their
bytes like every other object. Only this module and ``Store.open`` read ``keys/``.
"""

from __future__ import annotations

from ..backends.base import Backend
from ..crypto import keys as keymod
from ..errors import IntegrityError, UsageError, WrongPassword
from ..ids import object_name
from .store import Store


def unlock_master(backend: Backend, password: str) -> tuple[keymod.MasterKey, str]:
    """The master key that ``password`` opens, and the name of its key object."""
    names = [i.key.rsplit("/", 1)[1] for i in backend.list("keys/")]
    if not names:
        raise IntegrityError("the store has no key objects")
    for name in names:
        try:
            return keymod.unwrap(backend.get(f"keys/{name}"), password), name
        except WrongPassword:
            continue
    raise WrongPassword("wrong password or no key found for it")


def key_names(store: Store) -> list[str]:
    return [i.key.rsplit("/", 1)[1] for i in store.backend.list("keys/")]


def describe_key(store: Store, name: str) -> dict[str, object]:
    return keymod.describe(store.raw(f"keys/{name}"))


def add_key(store: Store, password: str, kdf_n: int = keymod.DEFAULT_SCRYPT_N) -> str:
    if not store.config.encrypted:
        raise UsageError("this store is not encrypted: it has no keys")
    data = keymod.wrap(store.master, password, n=kdf_n)
    name = object_name(data)
    store.backend.put(f"keys/{name}", data)
    return name


def remove_key(store: Store, name: str) -> None:
    names = key_names(store)
    if name not in names:
        raise UsageError(f"no key {name[:16]} in this store")
    if len(names) == 1:
        raise UsageError("refusing to remove the last key: the store would be unreadable")
    store.backend.delete(f"keys/{name}")
