"""The one pack reader: the blobs of one pack, read in few ranged requests, each checked.

``stream_blobs(store, pack, entries)`` serves every reader of blob bytes that comes by
the pack (restore, verify, sync, gc's repack, repair's salvage); ``Store.stream_blobs``
is its public face. ``read_header`` reads a pack's entries from its trailer and header
alone (``verify --repair-index``).

Invariants:
- Ranges are planned once (``plan_reads``): entries in offset order, a gap of at most
  ``GAP`` bytes between two wanted blobs is read rather than split into two requests,
  and a read holds at most ``CAP`` bytes (unless one blob alone is larger). ``cover``
  (``whole=``) reads every byte from 0 to the end of the last blob, gaps included, so
  the reader can hash the whole pack against its name.
- Every read goes into the iterating thread's reused buffer (``Scratch``, via
  ``get_into`` where the backend has it) and every blob is decrypted into another: a
  ``BlobRead``'s ``sealed`` and ``plain`` are views valid only until the next item is
  asked for. A consumer that keeps bytes copies them.
- Every blob is unsealed and re-hashed to its BlobId (unless ``unseal=False``) before it
  is yielded; a damaged blob is yielded with ``error`` set and ``plain`` None, never as
  good bytes, and the stream goes on (``BlobRead.checked()`` raises it). An entry that
  reaches past ``size`` is yielded as truncated without a read. A failed read (missing
  object, backend error) raises from the iteration.
- With ``whole``: after the last blob, ``finish()`` reads the tail, hashes it with the
  rest and parses the header through ``pack.decode_header`` -- the same checks as every
  other header reader.

Why ``GAP`` = 256 KiB and ``CAP`` = 4 MiB (measured; see ``benchmarks/packread_bench.py``
and the implementation notes, docs/design.md §11): a ranged request costs about as much as
reading a few hundred KiB more on a remote store, and on a local one the skipped bytes
cost a copy; 4 MiB is what a ``Scratch`` keeps between uses, so every read reuses the same
resident buffer (a larger cap allocated, and faulted in, a fresh buffer per read).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import blake3

from ..crypto.codec import Codec
from ..errors import IntegrityError
from ..scratch import Scratch, for_thread
from .pack import TRAILER, PackEntry, decode_header, header_span

GAP = 256 * 1024  # read across gaps of at most this many bytes rather than issue two reads
CAP = 4 << 20  # bytes one read holds at most (unless one blob is larger)


class PackSource(Protocol):
    """What the reader needs of a store (``Store`` is one): ranged reads and the codec."""

    codec: Codec

    def read_pack_range(self, pack: str, offset: int, length: int) -> bytes: ...

    def read_pack_range_view(self, pack: str, offset: int, length: int,
                             scratch: Scratch) -> memoryview: ...

    def unseal_entry_into(self, entry: PackEntry, sealed: bytes | memoryview,
                          scratch: Scratch) -> bytes | memoryview: ...


@dataclass(slots=True)
class BlobRead:
    """One blob as read: ``sealed`` always; ``plain`` when it unsealed and hashed to its id,
    else ``error`` (or neither, with ``unseal=False``). Views: valid until the next item."""

    entry: PackEntry
    sealed: memoryview
    plain: bytes | memoryview | None
    error: IntegrityError | None
    pack: str

    def checked(self) -> bytes | memoryview:
        """The plaintext, or the damage as an IntegrityError naming the pack."""
        if self.error is not None:
            raise IntegrityError(f"pack {self.pack[:16]}: {self.error}") from None
        assert self.plain is not None, "stream_blobs(unseal=False) yields no plaintext"
        return self.plain


@dataclass(frozen=True, slots=True)
class PackEnd:
    """What ``finish()`` found after a ``whole`` stream: whether every byte hashed to the
    pack's name, and the header's entries (or why they could not be read)."""

    hash_ok: bool
    header: list[PackEntry] | None
    header_error: IntegrityError | None


def plan_reads(entries: Iterable[PackEntry], gap: int = GAP, cap: int = CAP,
               cover: bool = False) -> list[tuple[int, int, list[PackEntry]]]:
    """``(start, end, entries)`` of each read, in offset order. Without ``cover`` a read
    starts at its first blob; with it, at the previous read's end (the first at 0)."""
    out: list[tuple[int, int, list[PackEntry]]] = []
    for e in sorted(entries, key=lambda e: e.offset):
        end = e.offset + e.length
        if out:
            start, last_end, group = out[-1]
            if (cover or e.offset - last_end <= gap) and end - start <= cap:
                group.append(e)
                out[-1] = (start, max(last_end, end), group)
                continue
        first = (out[-1][1] if out else 0) if cover else e.offset
        out.append((first, end, [e]))
    return out


class PackStream:
    """The blobs of one pack (iterate once), then, with ``whole``, ``finish()``."""

    def __init__(self, store: PackSource, pack: str, entries: Iterable[PackEntry], *,
                 size: int | None = None, whole: int | None = None, unseal: bool = True,
                 gap: int = GAP, cap: int = CAP) -> None:
        self.store, self.pack = store, pack
        self.whole = whole
        self.unseal = unseal
        self.size = whole if whole is not None else size
        ok: list[PackEntry] = []
        self._short: list[PackEntry] = []  # entries reaching past ``size``: unread
        for e in entries:
            past = self.size is not None and e.offset + e.length > self.size
            (self._short if past else ok).append(e)
        self.reads = plan_reads(ok, gap, cap, cover=whole is not None)
        self._hash = blake3.blake3() if whole is not None else None
        self._end = 0  # bytes of the pack read (and hashed) so far, with ``whole``

    def __iter__(self) -> Iterator[BlobRead]:
        rbuf, scratch = for_thread("read"), for_thread("unseal")
        store, pack = self.store, self.pack
        for e in self._short:
            yield BlobRead(e, memoryview(b""), None, IntegrityError(
                f"blob {e.id.hex()[:16]} is truncated (the pack has {self.size} bytes)"), pack)
        for start, end, group in self.reads:
            data = store.read_pack_range_view(pack, start, end - start, rbuf)
            if self._hash is not None:
                self._hash.update(data)
                self._end = end
            for e in group:
                sealed = data[e.offset - start : e.offset - start + e.length]
                plain: bytes | memoryview | None = None
                error: IntegrityError | None = None
                if self.unseal:
                    try:
                        plain = store.unseal_entry_into(e, sealed, scratch)
                    except IntegrityError as err:
                        error = err
                yield BlobRead(e, sealed, plain, error, pack)

    def finish(self) -> PackEnd:
        """After iterating a ``whole`` stream: read the tail (header and trailer), hash it
        with the rest, parse the header. A failed read raises."""
        assert self.whole is not None and self._hash is not None, "finish() needs whole="
        size = self.whole
        tail = self.store.read_pack_range(self.pack, self._end, size - self._end)
        self._hash.update(tail)
        hash_ok = self._hash.hexdigest() == self.pack
        try:
            start, hlen = header_span(tail, size, self.pack)
            if start < self._end:
                raise IntegrityError(f"pack {self.pack[:16]} header length exceeds the pack")
            header = decode_header(self.store.codec, memoryview(tail)[
                start - self._end : start - self._end + hlen], start, self.pack)
        except IntegrityError as err:
            return PackEnd(hash_ok, None, err)
        return PackEnd(hash_ok, header, None)


def read_header(store: PackSource, pack: str, size: int) -> list[PackEntry]:
    """A pack's entries from its trailer and sealed header alone (two ranged reads, no
    blob data); IntegrityError naming the pack when they are damaged."""
    if size < TRAILER.size:
        header_span(b"", size, pack)  # raises: truncated
    trailer = store.read_pack_range(pack, size - TRAILER.size, TRAILER.size)
    start, hlen = header_span(trailer, size, pack)
    return decode_header(store.codec, store.read_pack_range(pack, start, hlen), start, pack)
