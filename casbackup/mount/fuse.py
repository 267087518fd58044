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
- The kernel keeps file pages across opens (``kernel_cache``) and names and attributes
  for ``CACHE_SECONDS``; requests carry up to 1 MiB. libfuse's own messages go to stderr
  as usual, less one line libfuse 3.14 prints on every mount (``_LIBFUSE_NOISE``).

Invariant: a request never sees an exception other than ``OSError``: ``MountFS`` raises
only those for what it expects, and mfusepy turns anything else into ``EINVAL`` and logs it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import stat
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


def _s(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _operations(fs: MountFS, on_ready: Callable[[], None]) -> Any:
    mfusepy = _binding()

    class Ops(mfusepy.Operations):  # type: ignore[misc,name-defined]
        use_ns = True  # times are integer nanoseconds

        def init_with_config(self, conn: Any, config: Any) -> None:
            if conn is not None:  # requests of up to 1 MiB (libfuse derives max_pages from it)
                conn.max_write = 1 << 20
            on_ready()

        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            return fs.getattr(_b(path))

        def readdir(self, path: str, fh: int) -> list[Any]:
            return [".", "..", *((_s(n), a, 0) for n, a in fs.readdir(_b(path)))]

        def readlink(self, path: str) -> str:
            return _s(fs.readlink(_b(path)))

        def open(self, path: str, flags: int) -> int:
            return fs.open(_b(path), flags)

        def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
            return fs.read(fh, size, offset)

        def release(self, path: str | None, fh: int) -> int:
            fs.release(fh)
            return 0

        def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
            return fs.getxattr(_b(path), _b(name))

        def listxattr(self, path: str) -> list[str]:
            return [_s(n) for n in fs.listxattr(_b(path))]

        def statfs(self, path: str) -> dict[str, Any]:
            return fs.statfs()

    return Ops()


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

    ops = _operations(fs, mounted)
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
        mfusepy.FUSE(ops, mountpoint, **options)
    except RuntimeError as e:  # libfuse returned non-zero: it exited by a signal, or
        if ready:              # never mounted (it printed why on stderr)
            return "signal"
        raise CasError(f"cannot mount at {mountpoint} (libfuse said why above; code "
                       f"{e})") from None
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if not ready:
        raise CasError(f"cannot mount at {mountpoint}")
    return "unmounted"
