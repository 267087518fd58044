"""The narrow capabilities operations take from a store, declared here where they are
consumed (restic's ``archiverRepo`` style): a function that needs only one of them says
so in its signature, and anything with these methods (``store.Store`` has them all;
mypy checks that where a Store is passed) will do — a test double, a wrapper.

- ``BlobSaver``: what saving file content needs (``file_saver.FileSaver``): the chunker,
  BlobIds, the dedup check and adding blobs.
- ``PackReader``: the one pack reader (``Store.stream_blobs``, store/packread.py), for
  restore, verify, sync, gc's repack and repair's salvage.
- ``Maintainer``: what gc and repair may do beyond reading (``store.maintainer(store)``):
  listing, deleting, repacking, writing consolidated index objects.

Invariant: nothing here imports store internals; the types named (``AddResult``,
``PackEntry``, ``PackStream``, ``ObjectInfo``, ``Repacker``) are the store package's
public ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from ..chunking import Chunker
from ..model.snapshot import Snapshot
from ..store import AddResult, LiveBlob, ObjectInfo, PackEntry, PackStream, Repacker

if TYPE_CHECKING:
    from ..store.index import PackInfo  # the index's type: see tests/unit/test_layers.py


class BlobSaver(Protocol):
    chunker: Chunker

    def blob_id(self, data: bytes | memoryview) -> bytes: ...

    def has_blob(self, blob_id: bytes) -> bool: ...

    def add_blob(self, kind: str, data: bytes | memoryview,
                 blob_id: bytes | None = None) -> AddResult: ...

    def add_blobs(self, kind: str, datas: list[bytes]) -> list[AddResult]: ...


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

    def write_index_objects(self, packs: Iterable[PackInfo], supersedes: Iterable[str],
                            names: list[str] | None = None) -> list[str]: ...

    def read_pack_header(self, name: str, size: int) -> list[PackEntry]: ...

    def read_live_blobs(self, name: str, wanted: Iterable[PackEntry]) -> Iterator[LiveBlob]: ...

    def repacker(self) -> Repacker: ...
