"""The listing digest (ops/dircache.py) is the key of every directory cache record: its
one-pass form (``digest_and_racy``) hashes exactly the bytes the per-field form did (so
the cache files written before still match), and its racy flag is ``DirCache.racy`` of
any entry. Real lstats of a real directory, and made-up ones where fields vary."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from casbackup.ops.dircache import DirCache, digest_and_racy, listing_digest

_ENTRY = struct.Struct("<IQQQIIqQqq")


def _reference(dev: int, ino: int, entries: list[tuple[bytes, os.stat_result]]) -> bytes:
    """The digest as written until wave 8: one update per piece."""
    h = hashlib.blake2b(struct.pack("<QQ", dev, ino), digest_size=32)
    for name, s in entries:
        h.update(struct.pack("<I", len(name)))
        h.update(name)
        h.update(_ENTRY.pack(s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid, s.st_gid,
                             s.st_size, s.st_rdev, s.st_mtime_ns, s.st_ctime_ns))
    return h.digest()


u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
ns = st.integers(0, 2**62)


@st.composite
def fake_stat(draw: st.DrawFn) -> os.stat_result:
    # (mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime) + the ns fields
    m, c = draw(ns), draw(ns)
    seq = (draw(u32), draw(u64), draw(u64), draw(u64), draw(u32), draw(u32),
           draw(st.integers(0, 2**63 - 1)), 0, m // 10**9, c // 10**9)
    return os.stat_result(seq, {"st_rdev": draw(u64), "st_mtime_ns": m, "st_ctime_ns": c,
                                "st_atime_ns": 0})


@given(dev=u64, ino=u64, entries=st.lists(st.tuples(st.binary(min_size=1, max_size=20),
                                                    fake_stat()), max_size=8),
       start=st.integers(0, 2**62))
def test_same_bytes_and_racy_as_per_field(dev: int, ino: int,
                                          entries: list[tuple[bytes, os.stat_result]],
                                          start: int) -> None:
    dc = DirCache(Path("/nonexistent"), b"", start)
    digest, racy = digest_and_racy(dev, ino, entries, dc.racy_from)
    assert digest == _reference(dev, ino, entries) == listing_digest(dev, ino, entries)
    assert racy == any(dc.racy(s) for _, s in entries)
    assert digest_and_racy(dev, ino, entries, None) == (digest, False)


def test_a_real_directory(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_bytes(b"x" * i)
    (tmp_path / "d").mkdir()
    os.symlink("f1", tmp_path / "l")
    entries = [(os.fsencode(n), os.lstat(tmp_path / n)) for n in sorted(os.listdir(tmp_path))]
    top = os.lstat(tmp_path)
    assert digest_and_racy(top.st_dev, top.st_ino, entries, None)[0] == _reference(
        top.st_dev, top.st_ino, entries)
