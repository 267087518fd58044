"""Telling people how jobs went: apprise URLs, plain JSON webhooks and healthchecks.io-
style ping URLs, configured per job (``notify:``) or for all jobs (top-level ``notify:``).

Invariants:

* Every URL is a reference (``{env|file|command}``, resolved by ``resolve_password`` when
  it is used) because notification URLs carry tokens; no URL is ever logged: errors name
  the reference only.
* ``events`` selects them: ``start``, ``success``, ``failure``. A ``partial`` run (some
  files unreadable) notifies as a failure: it needs a look. Only a job's final attempt
  notifies (a failure that a retry fixes is a success).
* A healthchecks ping URL gets ``/start`` when a run starts (if ``start`` is selected),
  the URL itself on success and ``/fail`` on failure, with the error and the hooks'
  output tail as the body (healthchecks shows it).
* Sending happens on a thread of its own with a timeout (``TIMEOUT``): a slow or dead
  receiver never holds up the scheduler. A failed send is reported through ``report``
  (the daemon logs ``notify-error``) and never changes the job's result.
* apprise is imported only when an apprise URL is configured; without it installed, such a
  URL is an error at send time naming the missing package.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from ..errors import CasError
from .config import NotifyConfig
from .jobs import JobOutcome
from .secrets import PasswordRef, resolve_password

TIMEOUT = 10.0
Report = Callable[[str, str], None]  # (reference, error) of a failed send


def event_of(out: JobOutcome) -> str:
    return "success" if out.result == "success" else "failure"


def _summary(out: JobOutcome) -> dict[str, Any]:
    hooks = [{k: h.get(k) for k in ("phase", "command", "exit_code", "error")}
             for h in out.hooks]  # fmt: skip
    return {"job": out.job, "type": out.kind, "store": out.store, "result": out.result,
            "error": out.error, "exit_code": out.exit_code, "snapshot": out.snapshot,
            "started": out.started, "duration_seconds": round(out.duration, 3),
            "read_bytes": out.bytes_read, "added_bytes": out.bytes_added, "files": out.files,
            "warnings": out.warnings[:5], "hooks": hooks}  # fmt: skip


def _log_tail(out: JobOutcome) -> str:
    lines = [f"{out.job} ({out.kind} on {out.store}): {out.result}"]
    if out.error:
        lines.append(out.error)
    lines += out.warnings[:5]
    for h in out.hooks:
        lines.append(f"[{h['phase']} hook, exit {h['exit_code']}] {h.get('output', '')[-1000:]}")
    return "\n".join(lines)[-10000:]


def _post(url: str, body: bytes, content_type: str) -> None:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": content_type,
                                          "User-Agent": "casbackup"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        r.read()


def _apprise(url: str, title: str, body: str) -> None:
    try:
        import apprise
    except ImportError:
        raise CasError("apprise is not installed (pip install apprise)") from None
    a = apprise.Apprise()
    if not a.add(url):
        raise CasError("apprise does not understand the URL")
    if not a.notify(title=title, body=body):
        raise CasError("apprise could not deliver the notification")


class Notifier:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.threads: list[threading.Thread] = []

    def start(self, cfg: NotifyConfig | None, job: str, store: str, kind: str) -> None:
        if cfg is None or "start" not in cfg.events:
            return
        sends: list[tuple[PasswordRef, Callable[[str], None]]] = []
        title = f"casbackup: {job} started"
        body = json.dumps({"job": job, "store": store, "type": kind, "event": "start"}).encode()
        if cfg.healthchecks is not None:
            sends.append((cfg.healthchecks, lambda u: _post(u.rstrip("/") + "/start", b"",
                                                            "text/plain")))  # fmt: skip
        sends += [(r, lambda u: _post(u, body, "application/json")) for r in cfg.webhooks]
        sends += [(r, lambda u: _apprise(u, title, title)) for r in cfg.urls]
        self._send(sends)

    def finish(self, cfg: NotifyConfig | None, out: JobOutcome) -> None:
        if cfg is None:
            return
        event = event_of(out)
        sends: list[tuple[PasswordRef, Callable[[str], None]]] = []
        tail = _log_tail(out)
        if cfg.healthchecks is not None:  # pings report every result: that is their point
            suffix = "" if event == "success" else "/fail"
            sends.append((cfg.healthchecks, lambda u: _post(u.rstrip("/") + suffix,
                                                            tail.encode(), "text/plain")))
        if event in cfg.events:
            body = json.dumps({"event": event, **_summary(out)}, default=str).encode()
            title = f"casbackup: {out.job} {out.result}"
            sends += [(r, lambda u: _post(u, body, "application/json")) for r in cfg.webhooks]
            sends += [(r, lambda u: _apprise(u, title, tail)) for r in cfg.urls]
        self._send(sends)

    def _send(self, sends: list[tuple[PasswordRef, Callable[[str], None]]]) -> None:
        if not sends:
            return
        t = threading.Thread(target=self._run, args=(sends,), daemon=True, name="notify")
        self.threads = [x for x in self.threads if x.is_alive()] + [t]
        t.start()

    def _run(self, sends: list[tuple[PasswordRef, Callable[[str], None]]]) -> None:
        for ref, send in sends:
            try:
                url = resolve_password(ref)
                assert url is not None
                send(url)
            except (CasError, OSError, urllib.error.URLError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                self.report(str(ref), str(reason).split("\n")[0][:200])

    def wait(self, timeout: float = TIMEOUT + 1) -> None:
        """Let sends in flight finish (at shutdown, and in tests)."""
        for t in list(self.threads):
            t.join(timeout)
