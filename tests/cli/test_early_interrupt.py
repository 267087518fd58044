"""Ctrl-C and SIGTERM at every instant of a command's start (casbackup/entry.py): while
the interpreter imports the CLI there is no store open, and the command ends with at
most one line and 130 / 143 -- never Python's KeyboardInterrupt traceback. Real
processes, a signal sent after each of many delays across the start-up."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import casbackup
from tests.helpers import cli_env, json_lines, make_store

PACKAGE = str(Path(casbackup.__file__).parent) + "/"
DELAYS = [i * 0.025 for i in range(24)]  # 0-0.6 s: the interpreter, the imports, the open


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_a_signal_during_start_up_is_one_line_never_a_traceback(
        tmp_path: Path, sig: signal.Signals) -> None:
    store = tmp_path / "store"
    make_store(store).close()
    code_for = {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
    answered = 0
    for delay in DELAYS:
        p = subprocess.Popen([sys.executable, "-m", "casbackup", "snapshots", "--json",
                              "--store", str(store)], env=cli_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
        lines = [ln for ln in err.decode().splitlines() if ln.strip()]
        frames = set(re.findall(re.escape(PACKAGE) + r"(\S+?)\.py", err.decode()))
        # before entry.py's handler exists -- the interpreter's own start (site, runpy
        # finding the package, ~30 ms) -- Python's default handler answers: its trace (or
        # its "Exception ignored" note, when the import machinery swallowed it) holds no
        # frame of casbackup's but those imports
        before_ours = frames <= {"__init__", "__main__", "entry"}
        if "Traceback" in err.decode() or "KeyboardInterrupt" in err.decode():
            assert before_ours, (delay, err)
        if p.returncode == 0:  # the command finished first
            continue
        if not err.startswith(b"casbackup: "):
            assert before_ours and not out, (delay, p.returncode, out, err)
            continue
        assert p.returncode == code_for, (delay, p.returncode, err)
        assert len(lines) == 1, (delay, err)
        assert json_lines(out, "exit_error")[-1]["code"] == code_for, (delay, out)
        answered += 1
    assert answered, "no delay landed inside the command: the test tried nothing"
