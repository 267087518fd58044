"""The ``--json`` contract: one NDJSON writer and the shapes every command shares.

Invariants (docs/json.md is the promise; docs/json-schema/ the machine-checked form):

- With ``--json`` stdout carries only JSON lines, one object per line, each with a
  ``message_type`` string; nothing else reaches stdout. Human diagnostics stay on stderr.
- ``emit`` is the only writer: one lock, one ``write`` and a flush per line, so lines from
  worker threads never interleave.
- Units: sizes are bytes (``*_bytes``, or restic's own names such as ``total_bytes``,
  ``bytes_done``, ``data_added``), durations seconds (``*_seconds``, restic's
  ``seconds_elapsed``/``total_duration``), times RFC 3339 strings with an offset.
- Field names are restic's where restic has the field (doc/075_scripting.rst).
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model.snapshot import Snapshot, Summary
    from ..model.tree import Node

JSON = False  # --json is on for the command being run (``app.main`` sets it)
_lock = threading.Lock()


def emit(message_type: str, fields: dict[str, Any] | None = None) -> None:
    """Write one NDJSON line ``{"message_type": …, **fields}`` on stdout."""
    import json

    line = json.dumps({"message_type": message_type, **(fields or {})}, default=_default)
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    if isinstance(o, set | frozenset):
        return sorted(o)
    if isinstance(o, datetime):
        return rfc3339(o)
    raise TypeError(type(o).__name__)


def rfc3339(t: float | datetime | None) -> str | None:
    """An epoch time or a datetime as RFC 3339 with an offset (naive datetimes are local)."""
    if t is None:
        return None
    if isinstance(t, datetime):
        return (t if t.tzinfo is not None else t.astimezone()).isoformat()
    return datetime.fromtimestamp(t, UTC).isoformat()


def rfc3339_ns(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 keeping all nine digits."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z" if frac else f"{base}Z"


def exit_error(code: int, message: str) -> None:
    emit("exit_error", {"code": code, "message": message})


def backup_summary(s: Summary) -> dict[str, Any]:
    """A snapshot's summary under restic's names (``files_unmodified``, ``data_added``…)."""
    return {
        "files_new": s.files_new,
        "files_changed": s.files_changed,
        "files_unmodified": s.files_unchanged,
        "dirs": s.dirs,
        "total_files_processed": s.files_new + s.files_changed + s.files_unchanged,
        "total_bytes_processed": s.total_size,
        "read_bytes": s.bytes_read,
        "data_added": s.bytes_added,
        "data_added_packed": s.bytes_stored,
        "data_blobs": s.blobs_added,
        "unreadable_files": s.unreadable,
        "changed_during_read_files": s.changed_during_read,
        "total_duration": round(s.duration, 6),
    }


def snapshot_fields(s: Snapshot) -> dict[str, Any]:
    """A snapshot as ``snapshots``, ``ls`` and ``cat snapshot`` show it."""
    return {
        "id": s.id,
        "short_id": s.id[:8],
        "time": rfc3339(s.datetime),
        "hostname": s.hostname,
        "username": s.username,
        "paths": s.paths,
        "tags": s.tags,
        "backup_type": s.type,
        "parent": s.parent,
        "original": s.original,
        "tree": s.tree.hex(),
        "summary": backup_summary(s.summary),
    }


_KINDS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK,
          "fifo": stat.S_IFIFO, "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK,
          "socket": stat.S_IFSOCK}


def node_fields(n: Node, path: bytes) -> dict[str, Any]:
    """A tree entry as ``ls`` and ``find`` show it (restic's ``ls --json`` names)."""
    from .escape import shown

    return {
        "name": shown(os.fsdecode(n.name)),
        "type": n.type,
        "path": shown(os.fsdecode(path)),
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mode": n.mode,
        "permissions": stat.filemode(_KINDS.get(n.type, 0) | n.mode),
        "mtime": rfc3339_ns(n.mtime_ns),
        "target": shown(os.fsdecode(n.target)) if n.target is not None else None,
    }
