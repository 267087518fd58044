"""Reading a small file whole: the one implementation the saver thread and the save worker
processes share (file_saver.py, save_worker.py).

Invariant: ``read_small`` returns the file's bytes only when they are exactly what the
walker's lstat described -- as many bytes as its size, and size, mtime and ctime the same
by ``fstat`` after the read. Anything else (the file changed or grew since) is None: the
caller takes the careful path (``FileSaver._save_one``: re-reads, warns), never storing
a silent mix. The descriptor is left open: its owner closes it.
"""

from __future__ import annotations

import os


def read_small(fd: int, size: int, mtime_ns: int, ctime_ns: int) -> bytes | None:
    data = os.pread(fd, size + 1, 0)  # a short read of a regular file is its end
    st = os.fstat(fd)
    if (len(data) == size == st.st_size
            and st.st_mtime_ns == mtime_ns and st.st_ctime_ns == ctime_ns):
        return data
    return None
