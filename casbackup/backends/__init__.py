"""Backends: dumb key -> bytes storage (local directory, memory, S3, SFTP) plus wrappers.

Only ``casbackup.store`` imports this package. ``open_backend(url)`` maps a store URL to a
backend: a plain path (local, the default), ``memory://name``, ``s3://bucket/prefix``,
``sftp://user@host[:port]/path``. Optional backends are imported lazily.

Invariants: importing this package imports no optional dependency (obstore, paramiko);
``open_backend`` raises ``UsageError`` for a URL it cannot serve and wraps every backend
but memory in ``RetryingBackend`` unless ``retry=False``. A URL carrying a secret
(``s3://KEY:SECRET@bucket``, ``sftp://user:PASSWORD@host``) is refused before anything
else looks at it, with a message that does not repeat it (``refuse_credentials``), so no
later message or output can echo it.

Retry policy: a local store gets ``RetryingBackend``'s defaults (5 tries, ~1.5 s of
backoff in all). Remote stores (S3, SFTP) ride out longer outages -- a server restart, a
network blip -- with ``REMOTE_ATTEMPTS`` tries per call and backoff up to 10 s (about
30 s in all on average, at most ~55 s), like restic. ``CASBACKUP_RETRIES=N`` sets the
number of tries for remote stores (1: no retries).
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from ..envopts import env_int
from ..errors import UsageError
from .base import Backend, ObjectInfo, Properties, validate_key

__all__ = ["Backend", "ObjectInfo", "Properties", "open_backend", "validate_key", "local_root"]

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
REMOTE_ATTEMPTS = 10


def local_root(backend: Backend) -> str | None:
    """The root directory of a local backend (under any wrappers), else None."""
    from .local import LocalBackend

    b: object = backend
    for _ in range(8):  # unwrap RetryingBackend / FaultyBackend
        if isinstance(b, LocalBackend):
            return b.root
        b = getattr(b, "inner", None)
        if b is None:
            return None
    return None


def remote_attempts() -> int:
    """Tries per backend call for remote stores: ``$CASBACKUP_RETRIES`` or the default."""
    n = env_int("CASBACKUP_RETRIES", minimum=1, rule="a positive integer")
    return REMOTE_ATTEMPTS if n is None else n


def refuse_credentials(url: str) -> None:
    """``UsageError`` (not naming the secret) when URL carries credentials."""
    m = _SCHEME_RE.match(url)
    if not m:
        return  # a local path: '@' and ':' are ordinary characters
    scheme = m.group(1).lower()
    netloc = re.split(r"[/?#]", url[m.end():], maxsplit=1)[0]
    if "@" not in netloc:
        return
    userinfo = netloc.rsplit("@", 1)[0]
    if scheme == "s3":
        raise UsageError("s3 store URLs take no credentials (KEY:SECRET@bucket): set "
                         "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use a profile")
    if ":" in userinfo:
        raise UsageError(f"{scheme[:10]} store URLs take no password (user:PASSWORD@host): "
                         "use a key (?key=FILE) or ssh-agent")


def open_backend(url: str, *, retry: bool = True) -> Backend:
    """The backend for a store URL (see the package docstring).

    ``retry=True`` wraps local, S3 and SFTP backends in ``RetryingBackend`` with its
    default policy; pass ``retry=False`` for the raw backend (tests, custom policies).
    """
    refuse_credentials(url)
    m = _SCHEME_RE.match(url)
    scheme = m.group(1).lower() if m else ""
    backend: Backend
    remote = scheme in ("s3", "sftp")
    if scheme == "memory":
        from .memory import MemoryBackend

        name = url[len("memory://") :]
        return MemoryBackend(name or None)
    if not scheme or scheme == "file":
        from .local import LocalBackend

        if scheme == "file":
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise UsageError(f"file:// URL with a remote host is not supported: {url}")
            path = unquote(parts.path)
        else:
            path = url
        if not path:
            raise UsageError("empty store path")
        backend = LocalBackend(os.path.expanduser(path))
    elif scheme == "s3":
        from .s3 import S3Backend

        backend = S3Backend.from_url(url)
    elif scheme == "sftp":
        from .sftp import SFTPBackend

        backend = SFTPBackend.from_url(url)
    else:
        raise UsageError(f"unsupported store URL scheme {scheme!r} in {url}")
    if retry:
        from .retry import RetryingBackend

        if remote:
            backend = RetryingBackend(
                backend, attempts=remote_attempts(), base_delay=0.5, max_delay=10.0,
                label=_label(url))
        else:
            backend = RetryingBackend(backend, label=_label(url))
    return backend


def _label(url: str) -> str:
    """``url`` fit for a message: no password, no query; an S3 store names its endpoint."""
    from urllib.parse import parse_qs, urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.scheme or "://" not in url:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    out = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    endpoint = parse_qs(parts.query).get("endpoint")
    return f"{out} (endpoint {endpoint[0]})" if endpoint else out
