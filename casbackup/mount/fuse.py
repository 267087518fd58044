"""The FUSE binding: ``MountFS`` served through mfusepy and libfuse 3. The only importer
of ``mfusepy``.

Why mfusepy: it is ctypes over libfuse's high-level API, so it needs no compiler and no
headers (pyfuse3 must be built against libfuse3-dev), runs each request on libfuse's own
worker threads, where the store's synchronous reads fit (pyfuse3 wants trio), and it is
maintained (borg 2 and ratarmount use it). libfuse 3 is loaded even where libfuse 2 is
installed too (``FUSE_LIBRARY_NAME``).

- ``check_available()`` raises ``FuseUnavailable`` (one line, exit 1) when the binding,
  libfuse 3 or ``/dev/fuse`` is missing, before anything is opened.
- ``run(fs, mountpoint, …)`` mounts read-only (``ro``, ``nosuid``, ``nodev``, with the
  kernel checking permissions against the stored modes and owners, ``default_permissions``)
  and returns only once unmounted: by SIGINT, SIGTERM or SIGHUP (libfuse's own handlers,
  which unmount and return) or by ``fusermount3 -u`` from outside. It returns how it
  ended. The process's Python handlers of those signals are put back afterwards.
- The kernel keeps file pages across opens (``kernel_cache``), names and attributes for
  ``CACHE_SECONDS``, and link targets (``FUSE_CAP_CACHE_SYMLINKS``: a path through
  ``latest`` is otherwise one READLINK per system call); when a refresh moves a
  ``latest``, its cached target is dropped (``_Invalidator``). Requests carry up to 1 MiB.
  libfuse's own messages go to stderr as usual, less one line libfuse 3.14 prints on
  every mount (``_LIBFUSE_NOISE``).
- Fewer requests, each cheaper (measured: ``benchmarks/README.md``): READDIRPLUS entries
  carry complete attributes (with offsets: libfuse 3.14 drops them otherwise), so a walk
  or ``cp -a`` sends no LOOKUP for a listed directory's entries; OPEN is answered ENOSYS
  where the kernel supports that (``FUSE_CAP_NO_OPEN_SUPPORT``), so it opens files itself
  and sends no OPEN or RELEASE, and reads come by path (``MountFS.read_path``);
  ``_server`` answers from the bytes paths libfuse gives (mfusepy's own methods decode
  and re-encode each) and keeps one Python thread state per libfuse worker (else every
  request makes and drops one, and every thread-local with it, such as the zstd context
  of a read).

Invariant: a request never sees an exception other than ``OSError``: ``MountFS`` raises
only those for what it expects, and mfusepy turns anything else into ``EINVAL`` and logs it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import queue
import signal
import stat
import threading
from collections.abc import Callable
from typing import Any

from ..errors import CasError
from .fs import MountFS

INSTALL_HINT = "pip install 'casbackup[mount]' and apt-get install fuse3"


class FuseUnavailable(CasError):
    """No FUSE here: the binding, libfuse 3 or /dev/fuse is missing (exit 1)."""


def _binding() -> Any:
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except ImportError:
        raise FuseUnavailable(f"mount needs the mfusepy FUSE binding: {INSTALL_HINT}") from None
    except (OSError, AttributeError) as e:  # the binding found no (usable) libfuse
        raise FuseUnavailable(f"mount needs libfuse 3 ({e}): {INSTALL_HINT}") from None
    if mfusepy.fuse_version_major != 3:
        raise FuseUnavailable(f"mount needs libfuse 3, found {mfusepy.fuse_version_major}: "
                              f"{INSTALL_HINT}")
    return mfusepy


def check_available(dev: str = "/dev/fuse") -> None:
    _binding()
    try:
        if not stat.S_ISCHR(os.stat(dev).st_mode):
            raise FuseUnavailable(f"{dev} is not a character device: no FUSE in this kernel "
                                  "or container")
    except FileNotFoundError:
        raise FuseUnavailable(f"{dev} is missing: no FUSE in this kernel or container (load "
                              "the fuse module, or run the container with --device "
                              "/dev/fuse)") from None
    if not os.access(dev, os.R_OK | os.W_OK):
        raise FuseUnavailable(f"{dev} is not readable and writable by this user")


# the requests served (by ``_server``'s methods; mfusepy registers a libfuse callback for
# each name its Operations object has)
_SERVED = ("getattr", "readdir", "readlink", "open", "read", "release", "getxattr",
           "listxattr", "statfs")
FUSE_READDIR_PLUS = 1  # libfuse's readdir flag: the kernel asked for a READDIRPLUS
FUSE_FILL_DIR_PLUS = 2  # libfuse's filler flag: this entry's stat is complete


def _not_called(*_args: Any) -> Any:
    raise AssertionError("served by _server's methods")


FUSE_CAP_CACHE_SYMLINKS = 1 << 23  # the kernel keeps link targets in its page cache
FUSE_CAP_NO_OPEN_SUPPORT = 1 << 17  # an OPEN answered ENOSYS: the kernel opens files itself


class _Invalidator:
    """Drops the kernel's cached targets of links that changed (``latest``), on a thread of
    its own: libfuse's notifications are not to be sent from inside a request."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self._fuse: int | None = None
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="invalidate", daemon=True)

    def start(self, fuse_ptr: int) -> None:  # in init, the first request
        self._fuse = fuse_ptr
        self._lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._thread.start()

    def __call__(self, paths: list[bytes]) -> None:
        for p in paths:
            self._queue.put(p)

    def stop(self) -> None:
        """Called by libfuse's destroy, before it frees what ``fuse_invalidate_path``
        needs, and again after the mount (a no-op then)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            # -ENOENT: the kernel never looked it up, nothing to drop
            self._lib.fuse_invalidate_path(self._fuse, path)


def _operations(mfusepy: Any, on_ready: Callable[[], None], inval: _Invalidator,
                no_open: list[bool]) -> Any:
    def init_with_config(self: Any, conn: Any, config: Any) -> None:
        if conn is not None:  # requests of up to 1 MiB (libfuse derives max_pages from it)
            conn.max_write = 1 << 20
            if conn.capable & FUSE_CAP_NO_OPEN_SUPPORT:
                no_open.append(True)
            if conn.capable & FUSE_CAP_CACHE_SYMLINKS:
                conn.want |= FUSE_CAP_CACHE_SYMLINKS
                inval.start(mfusepy._libfuse.fuse_get_context().contents.fuse)
        on_ready()

    def destroy(self: Any, path: str) -> None:
        inval.stop()

    ns: dict[str, Any] = {n: _not_called for n in _SERVED}
    # times: integer nanoseconds
    ns.update(use_ns=True, init_with_config=init_with_config, destroy=destroy)
    return type("Ops", (mfusepy.Operations,), ns)()


def _server(mfusepy: Any, fs: MountFS, no_open: list[bool]) -> Any:
    """mfusepy's FUSE with the requests ``_SERVED`` answered here from bytes paths (no
    decoding and re-encoding of each path, no per-request wrapper objects), and readdir
    answering the kernel's READDIRPLUS with every entry's complete attributes, so that a
    walk or ``cp -a`` sends no LOOKUP for the entries of a listed directory."""
    c_stat, set_attrs = mfusepy.c_stat, mfusepy.set_st_attrs
    memmove, sizeof = ctypes.memmove, ctypes.sizeof

    def fill(buf: Any, attrs: dict[str, int]) -> None:
        ctypes.memset(buf, 0, sizeof(c_stat))
        set_attrs(buf.contents, attrs, use_ns=True)

    def put(data: bytes, buf: Any, size: int) -> int:
        if not buf:  # a size query (getxattr, listxattr)
            return len(data)
        if len(data) > size:
            return -errno.ERANGE
        memmove(buf, data, len(data))
        return len(data)

    ensure = ctypes.pythonapi.PyGILState_Ensure
    pinned = threading.local()

    class Server(mfusepy.FUSE):  # type: ignore[misc,name-defined]
        def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            # libfuse's worker threads are not Python's: each request would get a fresh
            # thread state, dropped when it returns, and with it every thread-local (the
            # zstd context, created anew for each read). One more PyGILState_Ensure, never
            # released, keeps this thread's state (libfuse keeps its workers: max_idle
            # is unlimited by default).
            if not getattr(pinned, "done", False):
                ensure()
                pinned.done = True
            return super()._wrapper(func, *args, **kwargs)

        def fgetattr(self, path: bytes, buf: Any, fip: Any) -> int:
            fill(buf, fs.getattr(path))  # (no nullpath_ok: a path is always given)
            return 0

        def readlink(self, path: bytes, buf: Any, bufsize: int) -> int:
            target = fs.readlink(path)[:bufsize - 1]
            memmove(buf, target + b"\0", len(target) + 1)
            return 0

        def open(self, path: bytes, fip: Any) -> int:
            if no_open:  # the kernel opens (read-only: the mount is ro) and keeps the cache
                return -errno.ENOSYS
            fi = fip.contents
            fi.fh = fs.open(path, fi.flags)
            return 0

        def read(self, path: bytes | None, buf: Any, size: int, offset: int,
                 fip: Any) -> int:
            fh = fip.contents.fh
            data = fs.read(fh, size, offset) if fh or path is None else \
                fs.read_path(path, size, offset)
            memmove(buf, data, len(data))
            return len(data)

        def release(self, path: bytes | None, fip: Any) -> int:
            fs.release(fip.contents.fh)  # (never sent once OPEN was declined)
            return 0

        def getxattr(self, path: bytes, name: bytes, value: Any, size: int,
                     *args: Any) -> int:
            return put(fs.getxattr(path, name), value, size)

        def listxattr(self, path: bytes, namebuf: Any, size: int) -> int:
            return put(b"".join(n + b"\0" for n in fs.listxattr(path)), namebuf, size)

        def statfs(self, path: bytes, buf: Any) -> int:
            for k, v in fs.statfs().items():
                setattr(buf.contents, k, v)
            return 0

        def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int,
                           fip: Any, flags: int) -> int:
            # Entries carry offsets (1, 2 for . and .., then 3, 4, ...): libfuse 3.14 keeps
            # the attributes of READDIRPLUS entries only in this mode (given offset 0 it
            # gathers the names and sends them with no attributes), and calls again from
            # OFFSET when the kernel's buffer was full.
            plus = FUSE_FILL_DIR_PLUS if flags & FUSE_READDIR_PLUS else 0
            first = max(0, offset - 2)
            entries = fs.readdir(path or b"/", first)
            for off, name in ((1, b"."), (2, b"..")):
                if offset < off and filler(buf, name, None, off, 0) != 0:
                    return 0
            st = c_stat()
            for off, (name, attrs) in enumerate(entries, first + 3):
                fill(ctypes.pointer(st), attrs)
                if filler(buf, name, st, off, plus) != 0:
                    break
            return 0

    return Server


CACHE_SECONDS = 60
# libfuse 3.14's fuse_main prints this on every mount (its old-API entry leaves the value
# unset, then uses its default): not a problem of the user's, so not shown
_LIBFUSE_NOISE = (b"Ignoring invalid max threads value",)
_log_func: list[Any] = []  # keeps the ctypes callback alive for the process


def _filter_libfuse_log(mfusepy: Any) -> None:
    """Route libfuse's messages to stderr as before, less ``_LIBFUSE_NOISE`` (x86-64
    only, where a ``va_list`` argument is a pointer that vsnprintf takes as is)."""
    lib = getattr(mfusepy, "_libfuse", None)
    if _log_func or platform.machine() != "x86_64" or lib is None \
            or not hasattr(lib, "fuse_set_log_func"):
        return
    vsnprintf = ctypes.CDLL(None).vsnprintf
    vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

    def log(level: int, fmt: bytes, ap: int) -> None:
        buf = ctypes.create_string_buffer(4096)
        vsnprintf(buf, len(buf), fmt, ap)
        if not any(n in buf.value for n in _LIBFUSE_NOISE):
            os.write(2, buf.value)

    cb = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(log)
    lib.fuse_set_log_func.argtypes = [ctypes.c_void_p]
    lib.fuse_set_log_func(ctypes.cast(cb, ctypes.c_void_p))
    _log_func.append(cb)

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run(fs: MountFS, mountpoint: str, *, allow_other: bool = False,
        on_ready: Callable[[], None] | None = None, debug: bool = False) -> str:
    """Serve FS at MOUNTPOINT until unmounted; ``"signal"`` or ``"unmounted"``."""
    mfusepy = _binding()
    _filter_libfuse_log(mfusepy)
    ready: list[bool] = []

    def mounted() -> None:
        ready.append(True)
        if on_ready is not None:
            on_ready()

    inval = _Invalidator(mfusepy._libfuse)
    fs.on_links_changed = inval
    no_open: list[bool] = []  # the kernel opens files itself (set in init)
    ops = _operations(mfusepy, mounted, inval, no_open)
    options: dict[str, Any] = {
        "foreground": True, "ro": True, "nosuid": True, "nodev": True,
        "default_permissions": True, "fsname": "casbackup", "subtype": "casbackup",
        "use_ino": True, "kernel_cache": True, "debug": debug,
        # a snapshot never changes: the kernel may keep names and attributes for a minute
        # (listings are not cached, so new snapshots still appear at once)
        "entry_timeout": CACHE_SECONDS, "attr_timeout": CACHE_SECONDS,
    }
    if allow_other:
        options["allow_other"] = True
    # libfuse installs its handlers (unmount and return) only over the default ones
    old = {s: signal.signal(s, signal.SIG_DFL) for s in _SIGNALS}
    try:
        _server(mfusepy, fs, no_open)(ops, mountpoint, **options)
    except RuntimeError as e:  # libfuse returned non-zero: it exited by a signal, or
        if ready:              # never mounted (it printed why on stderr)
            return "signal"
        raise CasError(f"cannot mount at {mountpoint} (libfuse said why above; code "
                       f"{e})") from None
    finally:
        inval.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if not ready:
        raise CasError(f"cannot mount at {mountpoint}")
    return "unmounted"
