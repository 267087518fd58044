"""LocalBackend: objects are files under a root directory (the default, embedded backend).

Invariants:
- A key ``a/b/c`` is the file ``<root>/a/b/c``; parent directories are created on demand
  (mode 0700) and each new directory's parent is fsynced, so the directory entry survives.
- ``put`` writes a temp file ``.tmp-*`` (mode 0600) in the target's own directory, fsyncs
  it, then publishes it in one step and fsyncs the directory:
  ``overwrite=True`` -> ``os.replace``; ``overwrite=False`` -> ``os.link(tmp, final)``, which
  fails atomically with ``EEXIST`` if the key exists (a true exclusive create), then the
  temp name is unlinked. On filesystems without hard links (FAT, some FUSE/SMB mounts) it
  falls back to check-then-``rename`` -- a small race between two writers of the same key,
  harmless for content-addressed keys (same name, same bytes); ``properties()`` then
  reports ``atomic_exclusive_create=False``.
- A reader sees the whole object or none; temp files are never listed, and a failed put
  removes its temp file.
- ``list`` walks directories sorting entries so that keys come out in string order
  (a directory ``d`` sorts as ``d/``).
- OSError is translated: ENOENT/ENOTDIR/EISDIR -> NotFound (on reads), EACCES/EPERM/ENOSPC/
  EROFS/EDQUOT/ENAMETOOLONG/ENOTDIR (on writes) -> PermanentError, anything else ->
  TransientError.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod
import tempfile
from collections.abc import Iterator

from ..errors import AlreadyExists, BackendError, NotFound, PermanentError, TransientError
from .base import ObjectInfo, Properties, check_range, is_temp_name, list_start, validate_key

_PERMANENT = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOSPC,
    errno.EROFS,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.EINVAL,
}
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}
_MISSING = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def translate_oserror(
    exc: OSError, op: str, key: str, *, missing_is_notfound: bool
) -> BackendError:
    """Map an OSError from ``op`` on ``key`` to the backend error tree (no secrets)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    msg = f"local {op} {key}: {reason}"
    if missing_is_notfound and exc.errno in _MISSING:
        return NotFound(f"object {key} not found", key)
    if exc.errno in _PERMANENT:
        return PermanentError(msg, key)
    return TransientError(msg, key)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend:
    """Objects as files under ``root``; the root is created by the first ``put``, not on open."""

    def __init__(self, root: str | os.PathLike[str], *, connections: int | None = None) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._connections = connections or max(2, os.cpu_count() or 2)
        self._links_work = True  # cleared on the first filesystem that refuses os.link

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"

    # -- helpers --------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *validate_key(key).split("/"))

    def _ensure_dir(self, path: str) -> None:
        """mkdir -p that fsyncs the parent of every directory it creates."""
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent != path:
            self._ensure_dir(parent)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            return
        _fsync_dir(parent)

    # -- protocol -------------------------------------------------------------------------

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        final = self._path(key)
        directory = os.path.dirname(final)
        tmp: str | None = None
        try:
            self._ensure_dir(directory)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if overwrite:
                os.replace(tmp, final)
                tmp = None
            else:
                self._publish_exclusive(tmp, final, key)
            _fsync_dir(directory)
        except OSError as exc:
            raise translate_oserror(exc, "put", key, missing_is_notfound=False) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _publish_exclusive(self, tmp: str, final: str, key: str) -> None:
        if self._links_work:
            try:
                os.link(tmp, final)
                return  # caller unlinks tmp
            except FileExistsError:
                raise AlreadyExists(f"object {key} already exists", key) from None
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                self._links_work = False
        # No hard links here: check-then-rename (documented race, see module docstring).
        if os.path.lexists(final):
            raise AlreadyExists(f"object {key} already exists", key)
        os.rename(tmp, final)

    def temp_writer(self, prefix: str) -> _LocalTempWriter:
        """A temp file under ``prefix`` (a key directory) to be committed later under any
        key on the same filesystem: the streaming put used for packs."""
        directory = os.path.join(self.root, *validate_key(prefix).split("/"))
        try:
            self._ensure_dir(directory)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        except OSError as exc:
            raise translate_oserror(exc, "put", prefix, missing_is_notfound=False) from exc
        return _LocalTempWriter(self, fd, tmp)

    @contextlib.contextmanager
    def _reading(self, key: str, offset: int, length: int | None) -> Iterator[tuple[int, int]]:
        """The object's open file and the byte count of the range; errors as ``get``'s."""
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except OSError as exc:
            raise translate_oserror(exc, "get", key, missing_is_notfound=True) from exc
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise NotFound(f"object {key} not found", key)
            yield fd, check_range(key, offset, length, st.st_size)
        except OSError as exc:
            raise translate_oserror(exc, "get", key, missing_is_notfound=True) from exc
        finally:
            os.close(fd)

    def get_into(self, key: str, offset: int, buf: memoryview) -> None:
        """``get`` of ``len(buf)`` bytes at ``offset`` into ``buf`` (``ReadIntoBackend``)."""
        with self._reading(key, offset, len(buf)) as (fd, n):
            done = 0
            while done < n:
                got = os.preadv(fd, [buf[done:]], offset + done)
                if not got:
                    raise TransientError(f"local get {key}: file shrank while reading", key)
                done += got

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        with self._reading(key, offset, length) as (fd, n):
            chunks: list[bytes] = []
            pos, remaining = offset, n
            while remaining > 0:
                chunk = os.pread(fd, remaining, pos)
                if not chunk:
                    raise TransientError(f"local get {key}: file shrank while reading", key)
                chunks.append(chunk)
                pos += len(chunk)
                remaining -= len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise translate_oserror(exc, "stat", key, missing_is_notfound=True) from exc
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotFound(f"object {key} not found", key)
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        head, name_prefix = list_start(prefix)
        start = os.path.join(self.root, *head.split("/")) if head else self.root
        base = f"{head}/" if head else ""
        for info in self._walk(start, base, name_prefix):
            if info.key.startswith(prefix):
                yield info

    def _walk(self, path: str, base: str, name_prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(path) as it:
                entries = []
                for e in it:
                    if is_temp_name(e.name) or not e.name.startswith(name_prefix):
                        continue
                    is_dir = e.is_dir()
                    entries.append((e.name + "/" if is_dir else e.name, is_dir, e))
        except FileNotFoundError:
            return
        except NotADirectoryError:
            return
        except OSError as exc:
            raise translate_oserror(exc, "list", base or "/", missing_is_notfound=False) from exc
        entries.sort(key=lambda t: t[0])
        for sort_name, is_dir, entry in entries:
            if is_dir:
                yield from self._walk(entry.path, base + sort_name, "")
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # deleted while listing
            except OSError as exc:
                raise translate_oserror(
                    exc, "list", base + entry.name, missing_is_notfound=False
                ) from exc
            if stat_mod.S_ISREG(st.st_mode):
                yield ObjectInfo(base + entry.name, st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if os.path.isdir(path):
                raise NotFound(f"object {key} not found", key)
            os.unlink(path)
            _fsync_dir(os.path.dirname(path))
        except OSError as exc:
            raise translate_oserror(exc, "delete", key, missing_is_notfound=True) from exc

    def close(self) -> None:
        pass

    def properties(self) -> Properties:
        return Properties(
            connections=self._connections,
            atomic_exclusive_create=self._links_work,
            is_local=True,
        )


class _LocalTempWriter:
    """Writes into a ``.tmp-`` file; ``commit`` = fsync, exclusive link into place, fsync
    the directory — the same durability and atomicity as ``LocalBackend.put``."""

    def __init__(self, backend: LocalBackend, fd: int, tmp: str) -> None:
        self._b = backend
        self._fd: int | None = fd
        self._tmp = tmp

    def write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.abort()
            raise translate_oserror(exc, "put", self._tmp, missing_is_notfound=False) from exc

    def commit(self, key: str) -> None:
        final = self._b._path(key)
        directory = os.path.dirname(final)
        try:
            assert self._fd is not None
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._b._ensure_dir(directory)
            self._b._publish_exclusive(self._tmp, final, key)
            _fsync_dir(directory)
        except OSError as exc:
            raise translate_oserror(exc, "put", key, missing_is_notfound=False) from exc
        finally:
            self.abort()

    def abort(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
