"""The narrow capabilities operations take from a store, declared here where they are
consumed (restic's ``archiverRepo`` style): a function that needs only one of them says
so in its signature, and anything with these methods (``store.Store`` has them all;
mypy checks that where a Store is passed) will do — a test double, a wrapper.

- ``BlobSaver``: what saving file content needs (``file_saver.FileSaver``): the chunker,
  BlobIds, the dedup check and adding blobs (plaintext, or sealed by a save worker
  process with the ``Sealer``'s keys).
- ``PackReader``: the one pack reader (``Store.stream_blobs``, store/packread.py), for
  restore, verify, sync, gc's repack and repair's salvage.
- ``Maintainer``: what gc and repair may do beyond reading (``store.maintainer(store)``):
  listing, deleting, repacking, writing consolidated index objects.
- ``IndexView``: the read-only, columnar view of the whole index (``store.blob_table``,
  store/blobtable.py) that gc's mark and plan and verify's checks run over: positions
  and pack ordinals, bulk lookups and per-pack sums with numpy, entries materialised
  only for the packs asked for. Per-blob state is the caller's: arrays over positions.

Invariant: nothing here imports store internals; the types named (``AddResult``,
``PackEntry``, ``PackInfo``, ``PackStream``, ``ObjectInfo``, ``Repacker``) are the store
package's public ones. Arrays are numpy ``ndarray``s (typed ``Array``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..chunking import Chunker
from ..model.snapshot import Snapshot
from ..store import (
    AddResult,
    LiveBlob,
    ObjectInfo,
    PackColumns,
    PackEntry,
    PackInfo,
    PackStream,
    Repacker,
    Sealer,
)

if TYPE_CHECKING:
    import numpy as np

    Array = np.ndarray[Any, Any]
else:
    Array = Any


class BlobSaver(Protocol):
    @property
    def chunker(self) -> Chunker: ...

    def blob_id(self, data: bytes | memoryview) -> bytes: ...

    def has_blob(self, blob_id: bytes) -> bool: ...

    def add_blob(self, kind: str, data: bytes | memoryview,
                 blob_id: bytes | None = None) -> AddResult: ...

    def add_blobs(self, kind: str, datas: list[bytes]) -> list[AddResult]: ...

    def add_sealed(self, kind: str, blobs: list[tuple[bytes, bytes, int]]) -> list[bool]: ...

    def sealer(self) -> Sealer: ...


class PackReader(Protocol):
    def stream_blobs(self, pack: str, entries: Iterable[PackEntry], *,
                     size: int | None = None, whole: int | None = None,
                     unseal: bool = True) -> PackStream: ...


class Maintainer(Protocol):
    def index_names(self) -> list[str]: ...

    def pack_listing(self) -> dict[str, ObjectInfo]: ...

    def delete_pack(self, name: str) -> None: ...

    def delete_index(self, name: str) -> None: ...

    def load_snapshot_if_present(self, name: str) -> Snapshot | None: ...

    def reset_index(self) -> None: ...

    def small_index_objects(self, among: Iterable[str]) -> list[str]: ...

    def merge_index_objects(self, names: list[str]) -> str | None: ...

    def write_index_objects(self, packs: Iterable[PackInfo | PackColumns],
                            supersedes: Iterable[str],
                            names: list[str] | None = None) -> list[str]: ...

    def read_pack_header(self, name: str, size: int) -> list[PackEntry]: ...

    def read_live_blobs(self, name: str, wanted: Iterable[PackEntry]) -> Iterator[LiveBlob]: ...

    def repacker(self) -> Repacker: ...


class IndexView(Protocol):
    """The whole index as columns (see store/blobtable.py for the invariants): ``n``
    record positions, ``n_packs`` pack ordinals (``names``, ``pack_size``)."""

    n: int
    n_packs: int
    names: list[str]
    pack_size: Array

    def pack_no(self, name: str) -> int | None: ...

    def kind(self, no: int) -> str: ...

    def mask(self, names: Iterable[str]) -> Array: ...

    def resolve(self, ids: Sequence[bytes], excluded: Array | None = None) -> Array: ...

    def entry_at(self, pos: int) -> tuple[str, PackEntry]: ...

    def pack_of(self, pos: int) -> int: ...

    def live_totals(self, live: Array) -> tuple[Array, Array]: ...

    def pack_entries(self, no: int) -> list[PackEntry]: ...

    def pack_pairs(self, no: int) -> list[tuple[int, PackEntry]]: ...

    def pack_count(self, no: int) -> int: ...

    def iter_packs(self, keep: Array | None = None) -> Iterator[PackInfo]: ...

    def iter_columns(self, keep: Array | None = None) -> Iterator[PackColumns]: ...

    def pack_columns(self, no: int) -> PackColumns: ...

    def nbytes(self) -> int: ...
