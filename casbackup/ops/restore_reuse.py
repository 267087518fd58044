"""restore in place: the snapshot's chunks already in the local file, copied, not fetched.

An existing file whose content shifted (an insert or a removal in the middle) differs
from the snapshot at every blob range after the change, but most of those blobs are in
it, at other offsets. ``local_chunks`` cuts the file from an offset on with the store's
chunker (content-defined: the cuts after a change are the backup's again) and names each
chunk by the store's keyed id; the survey (``restore_existing``) then plans each needed
blob found there as a ``Copy`` from the file to itself instead of a fetch, and
``order_copies`` puts the copies in an order in which none reads bytes another has
already overwritten. The writer runs ``copy_local`` on the surveyed inode before any
fetched blob is written into it.

Invariants:
- A copy's bytes are hashed again when they are read for writing (``copy_local``): a
  source that is not the blob (the file changed after the survey) is never written; the
  file is then not restored (``Changed``), as any file changed during a restore.
- ``order_copies`` returns the copies that read after the place they write (``src >
  dst``) in ascending ``dst``, then those that read before it in descending ``dst``;
  within each group no copy reads a range a previous one wrote (dest ranges are
  disjoint and ordered). A backward copy whose source overlaps a forward copy's dest is
  left out (the caller fetches that blob). Fetched blobs are written only after all
  copies of the file, and unchanged ranges are never written, so nothing else can
  overwrite a source before it is read.
- Crash point (``faults``): ``restore:copy`` after each copy is written.
- Reading and hashing go through one buffer per call, in pieces of ``PIECE`` bytes
  (small enough to stay in the CPU cache between the read and the hash).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..faults import crash_point
from .restore_fs import NotRestored

if TYPE_CHECKING:
    from ..chunking import Chunker

PIECE = 256 * 1024


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


NewHasher = Callable[[], Hasher]
GetChunker = Callable[[], "Chunker"]  # the store's, built only when first needed
Hash = Callable[[bytes | memoryview], bytes]


@dataclass(frozen=True, slots=True)
class Copy:
    k: int  # index of the blob in the node's content
    dst: int  # where it goes in the file
    src: int  # where the file already holds it
    length: int
    blob: bytes  # its id


class Changed(NotRestored):
    """A local chunk was not the blob any more when it was copied."""


def range_id(fd: int, off: int, ln: int, new: NewHasher, buf: memoryview) -> bytes | None:
    """The keyed id of FD's bytes [OFF, OFF+LN), read through BUF in pieces; None when
    the file ends before OFF+LN."""
    h = new()
    end = off + ln
    while off < end:
        n = os.preadv(fd, [buf[: min(len(buf), end - off)]], off)
        if n == 0:
            return None
        h.update(buf[:n])
        off += n
    return h.digest()


def local_chunks(fd: int, start: int, chunker: Chunker, blob_id: Hash, limit: int,
                 ) -> Iterator[tuple[int, int, bytes]]:
    """(offset, length, id) of each chunk of FD from START to its end (or the first that
    ends LIMIT bytes or more past START), cut with CHUNKER."""
    p = chunker.params
    buf = memoryview(bytearray(p.max_size + max(p.min_size, 2 << 20)))
    pos = [start]

    def readinto(into: memoryview) -> int:
        n = os.preadv(fd, [into], pos[0])
        pos[0] += n
        return n

    off = start
    for chunk in chunker.cut_reader(readinto, buf):
        yield off, len(chunk), blob_id(chunk)
        off += len(chunk)
        if off - start >= limit:
            return


def order_copies(copies: list[Copy]) -> list[Copy]:
    """The copies in an order in which none reads what an earlier one wrote, without
    the backward copies a forward one could overwrite (those are fetched instead)."""
    fwd = sorted((c for c in copies if c.src > c.dst), key=lambda c: c.dst)
    back = sorted((c for c in copies if c.src < c.dst), key=lambda c: -c.dst)
    starts = [c.dst for c in fwd]

    def clobbered(c: Copy) -> bool:  # a forward copy writes into [c.src, c.src + length)
        j = bisect.bisect_left(starts, c.src + c.length)
        return j > 0 and fwd[j - 1].dst + fwd[j - 1].length > c.src
    return fwd + [c for c in back if not clobbered(c)]


def copy_local(fd: int, copies: list[Copy], blob_id: Hash) -> int:
    """Copy each blob from where FD holds it to where it goes (in ``order_copies``'s
    order), each hashed again first; the bytes written. Raises ``Changed`` when a source
    is not its blob (nothing of that copy written)."""
    buf = bytearray(max((c.length for c in copies), default=0))
    mv = memoryview(buf)
    done = 0
    for c in copies:
        data = mv[: c.length]
        got = 0
        while got < c.length:
            n = os.preadv(fd, [data[got:]], c.src + got)
            if n == 0:
                break
            got += n
        if got != c.length or blob_id(data) != c.blob:
            raise Changed("the file changed during the restore")
        out, off = data, c.dst
        while out:
            n = os.pwrite(fd, out, off)
            out, off = out[n:], off + n
        done += c.length
        crash_point("restore:copy")
    return done
