"""``casbackup cache``: list the local caches of remote stores; ``--cleanup`` removes
those not used for ``--max-age`` days (as ``restic cache --cleanup``). Opens no store.

Invariant: only directories named by a store id (32 hex digits) directly under the cache
root are listed or removed; a cache is only ever a copy, so removing one loses nothing.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ..errors import UsageError
from ..store import list_store_caches, remove_store_cache
from .common import CacheDirOpt, JsonOpt, cache_settings, echo, human_bytes
from .output import emit, rfc3339


def cache_cmd(
    cleanup: Annotated[bool, typer.Option(
        "--cleanup", help="Remove the caches not used for --max-age days.")] = False,
    max_age: Annotated[int, typer.Option(
        "--max-age", help="With --cleanup: days without use before a cache goes.")] = 30,
    cache_dir: CacheDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the local caches of remote stores (size, last use); --cleanup removes old ones."""
    if max_age < 0:
        raise UsageError(f"--max-age must be a number of days >= 0, not {max_age}")
    settings = cache_settings(cache_dir, False)
    now = time.time()
    caches = list_store_caches(settings)
    removed = []
    if cleanup:
        for c in caches:
            if now - c.last_used > max_age * 86400:
                remove_store_cache(c)
                removed.append(c)
    if json_out:  # docs/json.md: a ``cache`` line per cache, then a summary
        for c in caches:
            emit("cache", {"store_id": c.store_id, "path": str(c.path), "files": c.files,
                           "size_bytes": c.size, "last_used": rfc3339(c.last_used),
                           "removed": c in removed})
        emit("summary", {"cache_dir": None if settings.directory is None
                         else str(settings.directory), "caches": len(caches),
                         "removed": len(removed)})
        return
    echo(f"cache directory {settings.directory}")
    for c in caches:
        age = (now - c.last_used) / 86400
        echo(f"{c.store_id}  {human_bytes(c.size):>10}  {c.files:8d} files  "
             f"used {age:.0f} days ago{'  (removed)' if c in removed else ''}")
    echo(f"{len(caches)} cache(s)" + (f", {len(removed)} removed" if cleanup else ""))


def register(app: typer.Typer) -> None:
    app.command("cache")(cache_cmd)
