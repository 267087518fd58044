"""Where each object of a store lives: every key name, and key -> name parsing.

Layout (identical on every backend, docs/design.md §2)::

    config            plaintext msgpack, written once with an exclusive put
    keys/<id>         wrapped master keys, one per passphrase
    packs/<ab>/<id>   immutable packs, fanned out by the name's first byte
    index/<id>        immutable index objects
    snapshots/<id>    immutable snapshot manifests (the commit point of a backup)
    locks/<id>        session locks
    gc/<id>[.sessions] condemnation records of two-phase gc and their waiting sets

Invariants:
- This module is the only place that spells a key prefix; everything else builds keys
  with these functions and turns listed keys back into names with ``name_of``.
- A prefix ends with ``/``: listing a prefix never matches another directory whose name
  starts the same way (``index/`` does not list ``indexes/``).
- ``name_of`` is the last path component of a key; for every prefix P and name N,
  ``name_of(P + N) == N`` and ``name_of(pack_key(N)) == N``.
- Nothing here reads or writes: the store decides what goes where, this says where.
"""

from __future__ import annotations

CONFIG = "config"
KEYS_DIR = "keys/"
PACKS_DIR = "packs/"
INDEX_DIR = "index/"
SNAPSHOTS_DIR = "snapshots/"
LOCKS_DIR = "locks/"
GC_DIR = "gc/"
PREFIXES = (KEYS_DIR, PACKS_DIR, INDEX_DIR, SNAPSHOTS_DIR, LOCKS_DIR, GC_DIR)


def name_of(key: str) -> str:
    """The object name of a key: its last component (``packs/ab/abcd…`` -> ``abcd…``)."""
    return key.rsplit("/", 1)[-1]


def pack_key(name: str) -> str:
    """The key of pack ``name``: fanned out by its first byte."""
    return f"{PACKS_DIR}{name[:2]}/{name}"


def pack_temp_dir() -> str:
    """The directory a streamed pack is written to before it is committed (a backend
    temp writer's prefix: the same filesystem as the packs)."""
    return PACKS_DIR.rstrip("/")


def index_key(name: str) -> str:
    return INDEX_DIR + name


def snapshot_key(name: str) -> str:
    return SNAPSHOTS_DIR + name


def key_object_key(name: str) -> str:
    """The key of key object ``name`` (a wrapped master key)."""
    return KEYS_DIR + name


def lock_key(name: str) -> str:
    return LOCKS_DIR + name


def gc_key(name: str) -> str:
    return GC_DIR + name
