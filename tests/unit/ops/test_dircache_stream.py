"""The directory cache file is written and read a bounded piece at a time (#17 item 3).

An unchanged re-backup of a tree of small files holds the cache's records (~32 B a
file: each file's blob id) for its walk; writing the file used to pack the whole body and
then copy it behind the magic and checksum, and reading it held the file, a copy of its
body and the unpacked rows at once: three more copies, the re-backup's peak at 1M files.
Now the traced peak of ``write`` and of ``open_cache`` above the records they keep is a
few ``_CHUNK``s whatever the number of records, and the bytes are those of the old
one-piece format (readable by an older casbackup, and an older file by this one).
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path
from typing import BinaryIO

import msgpack
import pytest

from casbackup.ops import dircache
from casbackup.ops.dircache import DirCache, DirRecord, open_cache

HEAD = b"head"
SNAP = "snap-1"
PER_DIR = 1000  # files (blob ids) a directory record lists


def _cache(path: Path, dirs: int) -> DirCache:
    dc = DirCache(path, HEAD, 0)
    for i in range(dirs):
        dc.new[hashlib.blake2b(b"%d" % i, digest_size=32).digest()] = DirRecord(
            os.urandom(32), os.urandom(32 * PER_DIR), ((b"sub", os.urandom(32)),))
    return dc


def _old_bytes(dc: DirCache, now_ns: int) -> bytes:
    """The file as the one-piece writer made it."""
    body = msgpack.packb([dc.header, SNAP, now_ns,
                          [[d, r.subtree, r.blobs, [list(s) for s in r.subdirs]]
                           for d, r in dc.new.items()]], use_bin_type=True)
    return dircache._MAGIC + hashlib.blake2b(body, digest_size=32).digest() + body


def _open(path: Path) -> DirCache | None:
    return open_cache(path.parent.parent, "h", [], b"", SNAP, 10.0)


def _extra_peaks(tmp_path: Path, dirs: int) -> tuple[int, int]:
    """Traced peak above what is kept, of writing and of reading DIRS records."""
    dc = _cache(tmp_path / "w", dirs)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    dc.write(SNAP, 5)
    write_extra = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    target = tmp_path / "dirs" / "x"
    target.parent.mkdir(exist_ok=True)
    os.replace(dc.path, target)
    del dc
    tracemalloc.start()
    got = dircache._decode(open(target, "rb"), HEAD, SNAP, 10)  # noqa: SIM115
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got is not None and len(got) == dirs
    return write_extra, peak - cur


def test_write_and_read_hold_no_whole_copy(tmp_path: Path) -> None:
    small = _extra_peaks(tmp_path / "s", 150)  # 4.8 MB of blob ids: several read chunks
    (tmp_path / "s").mkdir(exist_ok=True)
    (tmp_path / "l").mkdir()
    large = _extra_peaks(tmp_path / "l", 600)  # 19.2 MB: whole copies would be 2-3x that
    bound = 3 * dircache._CHUNK + (1 << 20)
    assert large[0] <= bound and large[1] <= bound, (small, large)
    # and the extra does not grow with the records (one more chunk of slack)
    assert large[0] - small[0] <= dircache._CHUNK and large[1] - small[1] <= dircache._CHUNK, (
        small, large)


def test_the_bytes_are_the_one_piece_formats(tmp_path: Path) -> None:
    dc = _cache(tmp_path / "dirs" / "c", 30)
    dc.write(SNAP, 7)
    assert dc.path.read_bytes() == _old_bytes(dc, 7)


def test_a_one_piece_file_is_read(tmp_path: Path) -> None:
    src = _cache(tmp_path / "x", 20)
    data = _old_bytes(src, 7)
    path = tmp_path / "dirs" / "x"
    path.parent.mkdir()
    path.write_bytes(data)
    with open(path, "rb") as f:
        got = dircache._decode(f, HEAD, SNAP, 10)
    assert got == src.new


def test_any_damage_is_none_and_another_snapshot_is_empty(tmp_path: Path) -> None:
    src = _cache(tmp_path / "x", 5)
    data = _old_bytes(src, 7)
    path = tmp_path / "f"

    def dec(b: bytes, snap: str = SNAP, start: int = 10) -> object:
        path.write_bytes(b)
        with open(path, "rb") as f:
            return dircache._decode(f, HEAD, snap, start)

    assert dec(data) == src.new
    assert dec(data, snap="other") == {}
    assert dec(data, start=6) == {}  # written after this backup's start (clock set back)
    for cut in (0, 10, len(dircache._MAGIC) + 32, len(data) // 2, len(data) - 1):
        assert dec(data[:cut]) is None, cut
        assert dec(data[:cut], snap="other") is None, cut
    assert dec(data + b"\x00") is None  # trailing bytes
    for at in (len(dircache._MAGIC) + 3, len(dircache._MAGIC) + 40, len(data) // 2,
               len(data) - 1):
        bad = bytearray(data)
        bad[at] ^= 1
        assert dec(bytes(bad)) is None, at
        assert dec(bytes(bad), snap="other") is None, at
    # a body whose checksum matches but that is not the format
    for body in (msgpack.packb([1, 2, 3]), msgpack.packb([HEAD, SNAP, 1, [[b"d", b"x"]]]),
                 msgpack.packb([HEAD, SNAP, 1, [[b"d", b"x" * 32, b"y" * 31, []]]]),
                 msgpack.packb([HEAD, SNAP, 1, 5]), msgpack.packb({"a": 1})):
        assert dec(dircache._MAGIC + hashlib.blake2b(body, digest_size=32).digest()
                   + body) is None, body


def test_a_write_that_fails_midway_leaves_the_previous_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk part-way through the rows: the previous file stays whole and in use,
    and no temporary file is left behind."""
    dc = _cache(tmp_path / "dirs" / "c", 30)
    dc.write(SNAP, 7)
    before = dc.path.read_bytes()
    real_open = open
    calls = [0]

    class Full:
        def __init__(self, f: BinaryIO) -> None:
            self.f = f

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def write(self, b: bytes) -> int:
            calls[0] += 1
            if calls[0] > 10:
                raise OSError(28, "No space left on device")
            return self.f.write(b)

        def seek(self, n: int) -> int:
            return self.f.seek(n)

    def full_open(path: Path, mode: str) -> Full:
        assert mode == "wb"
        return Full(real_open(path, mode))

    monkeypatch.setattr(dircache, "open", full_open, raising=False)
    _cache(dc.path, 30).write("snap-2", 8)
    assert calls[0] > 10
    assert dc.path.read_bytes() == before
    assert sorted(p.name for p in dc.path.parent.iterdir()) == ["c"]
