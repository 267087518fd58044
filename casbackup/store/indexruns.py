"""One index object straight into a sorted run of the compact index, in bounded memory.

``object_run(data, name, directory)`` walks an unsealed index object with the streaming
decoder (``indexcheck.walk_plain``) into flat columns (``compactindex.Flat``: 48 bytes an
entry, no Python object per entry); every ``RUN_ENTRIES`` entries, at the next pack
boundary, the columns become a sorted unnamed file, and those files are merged
(``compactindex.merge_files``) into the object's run. So the first command after a
writer left one index object of millions of entries holds the object's bytes and a
window of entries, not a Python object per entry (issue #12 point 2).

Invariants: the run holds exactly the records ``columns_from_packs`` makes of
``decode_index_object``'s packs (a pack named twice keeps its first entries; ties keep
the object's order); an object the decoder refuses raises ``IntegrityError`` and leaves
no file (unnamed files vanish when closed).
"""

from __future__ import annotations

from pathlib import Path

from .compactindex import CompactFile, Flat, merge_files, write_anonymous
from .indexcheck import walk_plain

RUN_ENTRIES = 1 << 17  # entries collected before they are sorted into an unnamed file


class _RunSink:
    """The decoder's sink: a ``Flat`` written as a sorted run every RUN_ENTRIES."""

    def __init__(self, name: str, directory: Path | None) -> None:
        self.name, self.directory = name, directory
        self.runs: list[CompactFile] = []
        self.seen: set[str] = set()  # packs of this object so far (a repeat is dropped)
        self.flat = Flat()

    def entry(self, id_: bytes, offset: int, length: int, raw: int) -> None:
        self.flat.entry(id_, offset, length, raw)

    def pack(self, name: str, kind: str, size: int) -> None:
        if name in self.seen:  # the first copy of a pack is kept
            self.flat.drop_pending()
            return
        self.seen.add(name)
        self.flat.pack(name, kind, size)
        if len(self.flat) >= RUN_ENTRIES:
            self.flush()

    def flush(self) -> None:
        flat, self.flat = self.flat, Flat()
        self.runs.append(write_anonymous(flat.columns([self.name]), self.directory))


def object_run(data: bytes, name: str, directory: Path | None = None
               ) -> tuple[CompactFile, list[str], bool]:
    """(the sorted unnamed run of index object NAME's records, its ``supersedes``, its
    ``exact`` flag) from its unsealed bytes DATA; ``IntegrityError`` when malformed.
    Unnamed files go in DIRECTORY (else the temporary directory)."""
    sink = _RunSink(name, directory)
    try:
        _n, supersedes, exact = walk_plain(data, name, sink)
        if sink.flat.packs or not sink.runs:
            sink.flush()
        if len(sink.runs) == 1:
            return sink.runs.pop(), supersedes, exact
        return merge_files(None, sink.runs), supersedes, exact
    finally:
        for r in sink.runs:
            r.close()
