"""The daemon under systemd's eyes, as a real process: READY/WATCHDOG/RELOADING/STOPPING
datagrams on a real ``$NOTIFY_SOCKET`` (what ``Type=notify`` + ``WatchdogSec=`` rely on),
syslog priority prefixes when stderr is the journal stream, a level on every line, and the
shipped unit passes ``systemd-analyze verify``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cli_env, make_store

ROOT = Path(__file__).parents[2]

CONFIG = """\
stores:
  local: {url: local, password: {env: CASBACKUP_PASSWORD}}
sources:
  src: {paths: [src]}
  src2: {paths: [src2]}
jobs:
  backup: {type: backup, cron: "* * * * * */2", store: local, source: src}
  broken: {type: backup, cron: "* * * * * */2", store: local, source: src2}
state: state.json
"""


def _site(tmp_path: Path) -> Path:
    for name in ("src", "src2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_bytes(os.urandom(3000))
    make_store(tmp_path / "local").close()
    (tmp_path / "casbackup.yaml").write_text(CONFIG)
    return tmp_path / "casbackup.yaml"


def _messages(sock: socket.socket, until: str, timeout: float) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(until in m.split("\n") for m in out):
            return out
    raise AssertionError(f"no {until} in {out}")


def test_notify_ready_watchdog_reload_stopping(tmp_path: Path) -> None:
    cfg = _site(tmp_path)
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        env = cli_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="600000")
        proc = subprocess.Popen([sys.executable, "-m", "casbackup", "daemon", "--config",
                                 str(cfg)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            first = _messages(sock, "READY=1", 20)
            ready = next(m for m in first if "READY=1" in m.split("\n"))
            assert f"MAINPID={proc.pid}" in ready.split("\n")
            # pings come at half of WatchdogSec (0.3 s): several within two seconds
            pings = [m for m in _collect(sock, 2.0) if m == "WATCHDOG=1"]
            assert len(pings) >= 3
            proc.send_signal(signal.SIGHUP)
            after = _messages(sock, "READY=1", 10)
            assert "RELOADING=1" in after
            proc.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in _messages(sock, "STOPPING=1", 20)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _collect(sock: socket.socket, seconds: float) -> list[str]:
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


@pytest.mark.parametrize("journal", [True, False])
def test_levels_and_journal_priorities(tmp_path: Path, journal: bool) -> None:
    """A failing job's line is ``<3>`` on the journal stream, a success ``<6>``; off the
    journal (JOURNAL_STREAM naming another file) there is no prefix but the level word."""
    cfg = _site(tmp_path)
    shutil.rmtree(tmp_path / "src2")  # the job "broken" now fails at every slot
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err:
        st = os.fstat(err.fileno()) if journal else os.stat(cfg)
        env = cli_env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        proc = subprocess.Popen([sys.executable, "-m", "casbackup", "daemon", "--config",
                                 str(cfg)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = log.read_text()
                if "job-failure" in text and "job-success" in text:
                    break
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    lines = log.read_text().splitlines()
    failure = next(ln for ln in lines if " job-failure " in ln)
    success = next(ln for ln in lines if " job-success " in ln)
    if journal:
        assert failure.startswith("<3>") and success.startswith("<6>")
        failure, success = failure[3:], success[3:]
    else:
        assert not failure.startswith("<")
    assert failure.split(" ")[1] == "error" and success.split(" ")[1] == "info"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_shipped_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on contrib/casbackup.service, with its ExecStart binary
    present where the README's install puts it (a venv under /opt/casbackup)."""
    unit = (ROOT / "contrib" / "casbackup.service").read_text()
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    binary = exec_start.split("=", 1)[1].split()[0]
    assert binary == "/opt/casbackup/bin/casbackup"
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    # point the unit at a stand-in for the venv's binary so verify can check it exists
    fake = tmp_path / "casbackup"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    (tmp_path / "casbackup.service").write_text(unit.replace(binary, str(fake)))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "casbackup.service")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "casbackup.service" not in r.stderr, r.stderr  # no warning about our unit
