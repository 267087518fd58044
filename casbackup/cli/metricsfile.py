"""``--metrics-file PATH`` (and ``--metrics-job NAME``) for one-shot commands: the
daemon's job and store metrics in a node_exporter textfile (not a command module:
``app.py`` does not register it). backup, restore, verify, gc, forget, sync and repair
take both options.

Invariants: the file is written when the command ends, successfully or with a
``CasError`` (then as a failure, the error untouched), or as what ``record`` said (a
verify that found problems, a partial restore); a file that cannot be written is a
warning, never the command's failure; the store URL in labels carries no credentials.
``--metrics-job`` names the run's series (default: the command), so textfiles of
different jobs against one store never collide.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from ..errors import CasError
from ..ops.status import collect, display_url
from ..store import Store, backend_retries
from .common import warn

MetricsFileOpt = Annotated[str | None, typer.Option(
    "--metrics-file", metavar="PATH",
    help="Write Prometheus metrics to this node_exporter textfile.")]
MetricsJobOpt = Annotated[str | None, typer.Option(
    "--metrics-job", metavar="NAME",
    help="The job_name label of --metrics-file's series (default: the command).")]


@contextlib.contextmanager
def job_metrics(
    path: str | None, store: Store, job: str
) -> Iterator[Callable[..., None]]:
    """Yields ``record(result, failure=None, partial=None)``; writes ``path`` (if given)
    when the block ends. ``failure``/``partial``: why the run failed or was partial even
    though ``result`` came back (verify's problems, a restore's unwritten entries)."""
    if path is None:
        yield lambda *a, **k: None
        return
    from ..daemon.jobs import JobOutcome

    out = JobOutcome(job=job, kind=job, store=display_url(store.url), started=time.time())
    t0 = time.monotonic()
    retries0 = backend_retries()

    def record(result: Any, failure: str | None = None, partial: str | None = None) -> None:
        if failure is not None:
            out.result, out.error, out.exit_code = "failure", failure, 13
        elif partial is not None:
            out.result, out.error, out.exit_code = "partial", partial, 3
        summary = getattr(result, "summary", None)
        snapshot = getattr(result, "snapshot", None)
        if summary is not None:
            out.bytes_read, out.bytes_added = summary.bytes_read, summary.bytes_added
            out.files = summary.files_new + summary.files_changed + summary.files_unchanged
            if summary.unreadable:
                out.result, out.exit_code = "partial", 3
        if snapshot is not None:
            out.snapshot = snapshot.id
        if summary is None and isinstance(getattr(result, "files", None), int):
            out.files = result.files  # a restore's
            out.bytes_read = int(getattr(result, "bytes_written", 0))

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
