"""``--metrics-file PATH`` for one-shot commands: the daemon's job and store metrics in a
node_exporter textfile (not a command module: ``app.py`` does not register it).

Invariants: the file is written when the command ends, successfully or with a
``CasError`` (then as a failure, the error untouched); a file that cannot be written is a
warning, never the command's failure; the store URL in labels carries no credentials.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import CasError
from ..ops.status import collect, display_url
from ..store import Store, backend_retries
from .common import warn


@contextlib.contextmanager
def job_metrics(
    path: str | None, store: Store, job: str
) -> Iterator[Callable[[Any], None]]:
    """Yields ``record(result)``; writes ``path`` (if given) when the block ends."""
    if path is None:
        yield lambda result: None
        return
    from ..daemon.jobs import JobOutcome

    out = JobOutcome(job=job, kind=job, store=display_url(store.url), started=time.time())
    t0 = time.monotonic()
    retries0 = backend_retries()

    def record(result: Any) -> None:
        summary = getattr(result, "summary", None)
        snapshot = getattr(result, "snapshot", None)
        if summary is not None:
            out.bytes_read, out.bytes_added = summary.bytes_read, summary.bytes_added
            out.files = summary.files_new + summary.files_changed + summary.files_unchanged
            if summary.unreadable:
                out.result, out.exit_code = "partial", 3
        if snapshot is not None:
            out.snapshot = snapshot.id

    try:
        yield record
    except CasError as e:
        out.result, out.error, out.exit_code = "failure", str(e), e.exit_code
        raise
    finally:
        out.duration = time.monotonic() - t0
        out.retries = backend_retries() - retries0
        _write(path, out, store)


def _write(path: str, out: Any, store: Store) -> None:
    from ..daemon.metrics import write_textfile

    stores = {}
    with contextlib.suppress(CasError):
        stores[out.store] = collect(store)
    try:
        write_textfile(path, out, time.time(), stores)
    except OSError as e:
        warn(f"cannot write the metrics file {path}: {e.strerror or e}")
