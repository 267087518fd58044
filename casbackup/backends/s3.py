"""S3Backend: objects in an S3 (or S3-compatible) bucket under a prefix, through ``obstore``.

URL: ``s3://bucket[/prefix][?endpoint=URL&region=NAME&allow_http=1&connections=N]``.
Credentials come only from the environment, never from the URL (URLs end up in shell
history, logs and process listings): ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, plus ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_REGION``/
``AWS_DEFAULT_REGION``; with ``AWS_PROFILE`` set and no access key in the environment, the
profile is resolved through boto3 when it is installed. Query parameters override env.

Invariants:
- Requests are path-style (``virtual_hosted_style_request=False``), so any endpoint works
  without wildcard DNS. Plain ``http://`` endpoints are allowed only for loopback hosts or
  with ``allow_http=1`` (or ``AWS_ALLOW_HTTP=true``); otherwise opening raises ``UsageError``.
- ``put`` is one PUT request: S3 makes it atomic. ``overwrite=False`` sends
  ``If-None-Match: *`` (obstore ``mode="create"``); the 412 answer becomes
  ``AlreadyExists``. AWS S3 honours it since 2024-08, as do MinIO, R2 and Ceph RGW; an
  S3-compatible service that *ignores* the header would silently overwrite -- use such a
  service only for content-addressed keys, where an overwrite writes the same bytes.
- S3 deletes are idempotent, so ``delete`` first HEADs the key to report ``NotFound``
  (a race with a concurrent delete only changes which caller sees ``NotFound``).
- ``list`` yields keys in S3's ListObjectsV2 order, which is byte order, i.e. sorted for
  ASCII keys. obstore lists by path segment, so an arbitrary string prefix (``packs/a``)
  is listed from its directory (``packs/``) and filtered.
- Errors: 404 -> ``NotFound``; 412 -> ``AlreadyExists``; 5xx, 429, timeouts and
  connection failures -> ``TransientError``; everything else -> ``PermanentError``.
  Messages carry the operation, key and HTTP status only, with configured secrets
  redacted -- never a signature or credential.
- obstore's own retries are kept short (2 retries, 30 s); ``RetryingBackend`` does the
  patient retrying.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from ..errors import (
    AlreadyExists,
    BackendError,
    NotFound,
    PermanentError,
    TransientError,
    Unreachable,
    UsageError,
)
from .base import ObjectInfo, Properties, check_range, list_start, validate_key

_STATUS_RE = re.compile(r"status code: (\d{3})")
_TRANSIENT_WORDS = (
    "timed out",
    "timeout",
    "connection",
    "error sending request",
    "dns error",
    "broken pipe",
    "reset by peer",
    "incomplete",
)
_URL_PARAMS = {"endpoint", "region", "allow_http", "connections"}
_REASON_RES = (
    re.compile(r'message: "([^"]{1,160})"'),
    re.compile(r'error: "([^"]{1,160})"'),
    re.compile(r'ConnectError\(\s*"([^"]{1,80})"'),
)


def _is_loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class S3Backend:
    """Objects under ``prefix`` in ``bucket``; see the module docstring for configuration."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        allow_http: bool | None = None,
        connections: int = 8,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from obstore.store import S3Store  # lazy: optional dependency

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._where = "AWS S3"
        self._connections = connections
        env = os.environ
        endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if allow_http is None:
            allow_http = env.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true") or (
                bool(endpoint) and _is_loopback(endpoint or "")
            )
        if endpoint and endpoint.lower().startswith("http://") and not allow_http:
            raise UsageError(
                f"s3://{bucket}: plain http endpoint {urlsplit(endpoint).hostname} is not "
                "loopback; use https, or allow_http=1 if the network is trusted"
            )
        cfg: dict[str, Any] = {"virtual_hosted_style_request": False}
        if endpoint:
            cfg["endpoint"] = endpoint
            self._where = urlsplit(endpoint).netloc or endpoint
        if region:
            cfg["region"] = region
        cfg.update(config or {})
        self._secrets = [
            str(v) for k, v in cfg.items() if k in ("secret_access_key", "session_token")
        ] + [env[k] for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if env.get(k)]
        provider = None
        if (
            env.get("AWS_PROFILE")
            and not env.get("AWS_ACCESS_KEY_ID")
            and ("access_key_id" not in cfg)
        ):
            provider = _profile_provider(env["AWS_PROFILE"])
        try:
            self._store = S3Store(
                bucket,
                prefix=self.prefix or None,
                config=cfg,  # type: ignore[arg-type]
                client_options={
                    "allow_http": allow_http,
                    "connect_timeout": dt.timedelta(seconds=10),
                    "timeout": dt.timedelta(seconds=300),
                },
                retry_config={
                    "max_retries": 2,
                    "retry_timeout": dt.timedelta(seconds=30),
                },
                credential_provider=provider,
            )
        except Exception as exc:  # obstore raises several types for bad configuration
            raise UsageError(
                f"s3://{bucket}: invalid S3 configuration: {self._scrub(_first_line(exc))}"
            ) from None

    @classmethod
    def from_url(cls, url: str) -> S3Backend:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            raise UsageError(f"not an s3:// URL with a bucket: {url}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - _URL_PARAMS
        if unknown:
            raise UsageError(f"unknown s3 URL parameter(s): {', '.join(sorted(unknown))}")
        allow = query.get("allow_http")
        try:
            connections = int(query.get("connections", "8"))
        except ValueError:
            raise UsageError("s3 URL parameter connections must be an integer") from None
        return cls(
            parts.netloc,
            parts.path,
            endpoint=query.get("endpoint"),
            region=query.get("region"),
            allow_http=None if allow is None else allow.lower() in ("1", "true", "yes"),
            connections=connections,
        )

    def __repr__(self) -> str:
        return f"S3Backend(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # -- errors ---------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if len(secret) >= 8:  # real secrets are long; short values would mangle text
                text = text.replace(secret, "***")
        return re.sub(r"(Signature|Credential|Security-Token)=[^&\s]+", r"\1=***", text)

    def _error(self, exc: BaseException, op: str, key: str) -> BackendError:
        from obstore import exceptions as ox

        first = _first_line(exc)
        status = _status(exc)
        detail = f"HTTP {status}" if status else self._scrub(first.split(" - ")[-1])[:200]
        refused = False
        if status is None and re.search(r"kind: (Connect|Timeout)", str(exc)):
            why = _reason(str(exc))
            refused = bool(re.search(r"refused|unreachable|no route", why, re.I))
            detail = self._scrub(f"cannot reach {self._where}: {why}")
        msg = f"s3 {op} {key}: {detail}"
        if refused:
            return Unreachable(msg, key)
        if isinstance(exc, ox.AlreadyExistsError | ox.PreconditionError) or status == 412:
            return AlreadyExists(f"object {key} already exists", key)
        if isinstance(exc, FileNotFoundError) or status == 404:
            if op in ("put", "list"):  # the bucket itself is missing
                return PermanentError(f"s3 {op} {key}: bucket {self.bucket} not found", key)
            return NotFound(f"object {key} not found", key)
        if isinstance(exc, ox.PermissionDeniedError | ox.UnauthenticatedError):
            return PermanentError(msg, key)
        if status is not None:
            cls = TransientError if status >= 500 or status in (408, 429) else PermanentError
            return cls(msg, key)
        lowered = first.lower()
        if isinstance(exc, ox.JoinError | TimeoutError | ConnectionError) or any(
            w in lowered for w in _TRANSIENT_WORDS
        ):
            return TransientError(msg, key)
        return PermanentError(msg, key)

    # -- protocol -------------------------------------------------------------------------

    def put(self, key: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        import obstore

        validate_key(key)
        try:
            mode: Literal["create", "overwrite"] = "overwrite" if overwrite else "create"
            obstore.put(self._store, key, memoryview(data), mode=mode)
        except Exception as exc:
            raise self._error(exc, "put", key) from None

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        import obstore

        validate_key(key)
        if offset < 0 or (length is not None and length < 0) or length == 0:
            # An empty (or invalid) range is not an HTTP range: check it against the size.
            check_range(key, offset, length, self.stat(key).size)
            return b""
        try:
            if offset == 0 and length is None:
                return bytes(obstore.get(self._store, key).bytes())
            if length is None:
                data = bytes(
                    obstore.get(self._store, key, options={"range": {"offset": offset}}).bytes()
                )
            else:
                data = bytes(obstore.get_range(self._store, key, start=offset, length=length))
        except Exception as exc:
            if _status(exc) == 416:
                # Range not satisfiable: offset == size is an empty read, beyond is an error.
                check_range(key, offset, length, self.stat(key).size)
                return b""
            raise self._error(exc, "get", key) from None
        if length is not None and len(data) != length:
            check_range(key, offset, length, offset + len(data))
        return data

    def stat(self, key: str) -> ObjectInfo:
        import obstore

        validate_key(key)
        try:
            meta = obstore.head(self._store, key)
        except Exception as exc:
            raise self._error(exc, "stat", key) from None
        return ObjectInfo(key, int(meta["size"]), meta["last_modified"].timestamp())

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        import obstore

        head, _ = list_start(prefix)
        try:
            for chunk in obstore.list(self._store, prefix=head or None, chunk_size=1000):
                for meta in chunk:
                    key = meta["path"]
                    if key.startswith(prefix):
                        yield ObjectInfo(key, int(meta["size"]), meta["last_modified"].timestamp())
        except Exception as exc:
            raise self._error(exc, "list", prefix) from None

    def delete(self, key: str) -> None:
        import obstore

        self.stat(key)  # S3 deletes are idempotent: report NotFound ourselves
        try:
            obstore.delete(self._store, key)
        except Exception as exc:
            raise self._error(exc, "delete", key) from None

    def close(self) -> None:
        pass

    def properties(self) -> Properties:
        return Properties(
            connections=self._connections, atomic_exclusive_create=True, is_local=False
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _reason(text: str) -> str:
    """The innermost cause of a connection failure in obstore's debug text."""
    if "kind: Timeout" in text:
        return "timed out"
    for rx in _REASON_RES:
        m = rx.search(text)
        if m:
            return m.group(1)
    if "InvalidMessage" in text or "certificate" in text.lower():
        return "TLS handshake failed (is the endpoint https?)"
    return "connection failed"


def _status(exc: BaseException) -> int | None:
    """The HTTP status obstore reports in its message, if any."""
    m = _STATUS_RE.search(_first_line(exc))
    return int(m.group(1)) if m else None


def _profile_provider(profile: str) -> Any:
    """A credential provider for an AWS profile (needs boto3), or None without boto3."""
    try:
        import boto3  # type: ignore[import-untyped]
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None
    try:
        return Boto3CredentialProvider(boto3.Session(profile_name=profile))
    except Exception as exc:  # botocore's ProfileNotFound, bad config files, ...
        raise UsageError(f"AWS profile {profile!r}: {type(exc).__name__}") from None
