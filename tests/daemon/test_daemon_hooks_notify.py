"""Hooks, dump jobs and notifications, with real commands, a real store on disk, a real
daemon process and a real HTTP receiver on loopback.

- hooks: order (global before job's before; job's after before global after), the
  environment they see, a failing ``before`` skips the job and fails the run, a failing
  ``after`` fails it, ``on_error``/``finally`` failures are warnings, timeouts kill;
- dump jobs commit the command's stdout only when it exits 0 (a failing ``pg_dump`` leaves
  no snapshot);
- notifications: webhooks, healthchecks pings (/start, success, /fail with the log) and
  apprise ``json://`` URLs reach the receiver, URLs come only from references.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from casbackup.daemon.config import load_config
from casbackup.daemon.jobs import run_job
from tests.helpers import PASSWORD, cli_env, make_store, open_test_store


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASBACKUP_PASSWORD", PASSWORD)


def _site(tmp_path: Path, jobs: str, top: str = "") -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(os.urandom(5000))
    make_store(tmp_path / "store").close()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stores:\n  s: {url: store, password: {env: CASBACKUP_PASSWORD}}\n"
                   "sources:\n  src: {paths: [src]}\n" + top + "jobs:\n" + jobs)
    return cfg


def test_hook_order_environment_and_success(tmp_path: Path) -> None:
    log = tmp_path / "log"
    rec = f'echo "$CASBACKUP_HOOK $CASBACKUP_JOB $CASBACKUP_STORE $CASBACKUP_RESULT' \
          f' ${{CASBACKUP_SNAPSHOT:+snap}}" >> {log}'
    cfg = _site(tmp_path, f"""\
  b:
    type: backup
    cron: "@daily"
    store: s
    source: src
    hooks: {{before: ['{rec}; echo job-before >> {log}'], after: ['echo job-after >> {log}'],
             finally: ['{rec}']}}
""", top=f"hooks: {{before: ['echo global-before >> {log}'], after: ['echo global-after >> {log}'],"
         f" on_error: ['echo never >> {log}']}}\n")
    out = run_job(load_config(cfg), "b")
    assert out.result == "success", out.error
    assert log.read_text().splitlines() == [
        "global-before", "before b s  ", "job-before", "job-after", "global-after",
        "finally b s success snap"]
    assert [h["phase"] for h in out.hooks] == ["before", "before", "after", "after", "finally"]
    assert all(h["exit_code"] == 0 for h in out.hooks)


def test_failing_before_skips_the_job_and_runs_on_error_and_finally(tmp_path: Path) -> None:
    log = tmp_path / "log"
    cfg = _site(tmp_path, f"""\
  b:
    type: backup
    cron: "@daily"
    store: s
    source: src
    hooks:
      before: ["echo mounting; exit 7", "echo not-reached >> {log}"]
      on_error: ['echo "error $CASBACKUP_RESULT $CASBACKUP_EXIT_CODE" >> {log}', "exit 1"]
      finally: ["echo finally >> {log}"]
""")
    out = run_job(load_config(cfg), "b")
    assert out.result == "failure" and out.exit_code == 1
    assert out.error is not None and "before hook" in out.error and "status 7" in out.error
    assert "job skipped" in out.error
    assert log.read_text().splitlines() == ["error failure 1", "finally"]
    assert out.hooks[0]["output"] == "mounting\n"
    assert any("on_error hook" in w for w in out.warnings)  # a failing on_error: a warning
    with open_test_store(tmp_path / "store") as st:
        assert st.snapshots() == []  # the job never ran


def test_failing_after_fails_the_run_and_timeouts_kill(tmp_path: Path) -> None:
    cfg = _site(tmp_path, """\
  b:
    type: backup
    cron: "@daily"
    store: s
    source: src
    hooks: {after: ["sleep 30"], timeout: 0.5}
""")
    t0 = time.monotonic()
    out = run_job(load_config(cfg), "b")
    assert time.monotonic() - t0 < 20
    assert out.result == "failure"
    assert out.error is not None and "timed out after 0.5s" in out.error
    with open_test_store(tmp_path / "store") as st:
        assert len(st.snapshots()) == 1  # the backup itself committed before `after`


@pytest.mark.parametrize("fails", [False, True])
def test_dump_job_commits_only_when_the_command_succeeds(tmp_path: Path, fails: bool) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(3 << 20))
    cmd = f"cat {payload}" + ("; echo 'pg_dump: connection lost' >&2; exit 1" if fails else "")
    cfg = _site(tmp_path, f"""\
  db:
    type: dump
    cron: "@daily"
    store: s
    command: "{cmd}"
    filename: db.sql
    tags: [db]
""")
    out = run_job(load_config(cfg), "db")
    with open_test_store(tmp_path / "store") as st:
        snaps = st.snapshots()
        if fails:
            assert out.result == "failure" and snaps == []
            assert out.error is not None and "exited with status 1" in out.error
            assert "connection lost" in out.error
            return
        assert out.result == "success", out.error
        [snap] = snaps
        assert snap.tags == ["db"] and snap.paths == ["/db.sql"]
    r = subprocess.run([sys.executable, "-m", "casbackup", "restore", "latest",
                        str(tmp_path / "out"), "--store", str(tmp_path / "store")],
                       env=cli_env(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "db.sql").read_bytes() == payload.read_bytes()


class Receiver:
    """A loopback HTTP server recording every request (path, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        cond = self.cond = threading.Condition()
        requests = self.requests

        class H(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with cond:
                    requests.append((self.command, self.path, body))
                    cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _record  # noqa: N815

            def log_message(self, *a: Any) -> None:
                return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, pred: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.requests):
                if time.monotonic() > deadline:
                    raise AssertionError(f"got only {self.requests}")
                self.cond.wait(0.2)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.httpd.shutdown()


def test_daemon_notifies_webhook_healthchecks_and_apprise(tmp_path: Path,
                                                          receiver: Receiver) -> None:
    base = f"http://127.0.0.1:{receiver.port}"
    (tmp_path / "hook-url").write_text(f"{base}/hook\n")
    cfg = _site(tmp_path, """\
  good:
    type: backup
    cron: "* * * * * */2"
    store: s
    source: src
    notify: {events: [start, success, failure], healthchecks: {env: HC_GOOD},
             webhooks: [{file: hook-url}]}
  bad:
    type: backup
    cron: "* * * * * */2"
    store: s
    source: gone
    hooks: {before: ["echo before-output"]}
""".replace("source: gone", "source: src2"),
        top="notify: {urls: [{env: APPRISE_URL}], healthchecks: {env: HC_BAD}}\n")
    text = cfg.read_text().replace("  src: {paths: [src]}\n",
                                   "  src: {paths: [src]}\n  src2: {paths: [src2]}\n")
    cfg.write_text(text)
    env = cli_env(HC_GOOD=f"{base}/ping/good", HC_BAD=f"{base}/ping/bad",
                  APPRISE_URL=f"json://127.0.0.1:{receiver.port}/apprise")
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", "daemon", "--config", str(cfg),
                             "--json"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def done(reqs: list[tuple[str, str, bytes]]) -> bool:
            paths = [p for _, p, _ in reqs]
            return ("/ping/good/start" in paths and "/ping/good" in paths and "/hook" in paths
                    and "/ping/bad/fail" in paths and "/apprise" in paths)
        try:
            receiver.wait(done)
        except AssertionError as e:
            proc.send_signal(signal.SIGTERM)
            raise AssertionError(proc.communicate(timeout=60)[1].decode()[-3000:]) from e
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    events = [json.loads(ln) for ln in err.decode().splitlines() if ln.startswith("{")]
    reqs = receiver.requests
    hooks = [json.loads(b) for m, p, b in reqs if p == "/hook"]
    assert {h["event"] for h in hooks} >= {"start", "success"}
    ok = next(h for h in hooks if h["event"] == "success")
    assert ok["job"] == "good" and ok["result"] == "success" and len(ok["snapshot"]) == 64
    fail = next(b for m, p, b in reqs if p == "/ping/bad/fail").decode()
    assert "bad (backup on s): failure" in fail and "src2" in fail  # the error, for the log
    assert "before-output" in fail  # the hooks' output tail goes along
    apprise = [json.loads(b) for m, p, b in reqs if p == "/apprise"]
    assert any("bad failure" in a.get("title", "") for a in apprise)
    # the global notify applies to `bad` only: `good` has its own (no apprise for it)
    assert not any("good" in a.get("title", "") for a in apprise)
    assert not any(p.startswith("/ping/bad/start") for _, p, _ in reqs)  # start not selected
    # no URL appears in the daemon's log, and hook runs are logged with their output
    log = err.decode()
    assert base not in log and "/ping/" not in log
    assert any(e["event"] == "hook" and e.get("output") == "before-output" for e in events)


def test_notify_error_names_the_reference_only(tmp_path: Path) -> None:
    from casbackup.daemon.config import NotifyConfig
    from casbackup.daemon.jobs import JobOutcome
    from casbackup.daemon.notify import Notifier
    from casbackup.daemon.secrets import PasswordRef

    errors: list[tuple[str, str]] = []
    n = Notifier(lambda ref, err: errors.append((ref, err)))
    os.environ["CASBACKUP_TEST_HOOK_URL"] = "http://127.0.0.1:9/secret-token-123"
    try:
        n.finish(NotifyConfig(webhooks=(PasswordRef("env", "CASBACKUP_TEST_HOOK_URL"),)),
                 JobOutcome("j", "backup", "s", "failure", error="x"))
        n.wait()
    finally:
        del os.environ["CASBACKUP_TEST_HOOK_URL"]
    [(ref, err)] = errors
    assert ref == "env:CASBACKUP_TEST_HOOK_URL" and "secret-token" not in err
