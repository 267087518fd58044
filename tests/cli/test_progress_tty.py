"""Progress on a real terminal: casbackup runs in a pseudo-terminal and the screen is read
with pyte (a VT100 emulator), frame by frame, as a person would see it.

The bar shows percent, done/total files (packs for verify), bytes done/total in IEC units
(the summary's), a rate and an ETA; lines printed while it is drawn (-v file lines) land
above it whole; it is gone from the final screen, which ends with the summary.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.helpers import cli_env, run_cli

pyte = pytest.importorskip("pyte")

# wide enough that a "restored  <target><source path>" line never wraps, also under
# xdist's longer temporary paths (/tmp/pytest-of-root/pytest-N/popen-gwK/...: 160 wrapped)
COLS, ROWS = 400, 48
SIZE = r"\d+(\.\d)? (B|KiB|MiB|GiB)"


def in_pty(*args: str, timeout: float = 300) -> tuple[int, list[list[str]]]:
    """Run the CLI on a pty; every distinct screen it showed, and its exit code."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr are the pty's slave
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**cli_env(), "TERM": "xterm-256color", "COLUMNS": str(COLS)}
        env.pop("NO_COLOR", None)
        os.execvpe(sys.executable, [sys.executable, "-m", "casbackup", *args], env)
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    frames: list[list[str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        # One frame per carriage return: a short phase's bar and the sequence that
        # clears it often arrive in one read, and the bar was on the screen in between.
        for piece in re.split(rb"(?=\r)", data):
            stream.feed(piece)
            shown = [line.rstrip() for line in screen.display]
            if not frames or frames[-1] != shown:
                frames.append(shown)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), frames


def bar_lines(frames: list[list[str]], what: str) -> list[str]:
    return [ln for f in frames for ln in f if ln.startswith(what) and "ETA" in ln]


@pytest.fixture
def big(tmp_path: Path) -> tuple[str, Path]:
    """A store and a source of six 24 MiB files: long enough for the bar to be drawn."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(os.urandom(24 << 20))
    store = str(tmp_path / "store")
    assert run_cli("init", "--store", store).returncode == 0
    return store, src


def test_backup_restore_verify_bars_on_a_terminal(big: tuple[str, Path],
                                                  tmp_path: Path) -> None:
    store, src = big
    code, frames = in_pty("backup", "--store", store, str(src))
    assert code == 0, frames[-1]
    bars = bar_lines(frames, "backup")
    assert bars, "no progress bar was ever drawn"
    pattern = re.compile(rf"backup .* +\d+\.\d%  \d+/6 files  {SIZE}/{SIZE}  {SIZE}/s  "
                         r"ETA (\d+:\d\d|-:--)")
    assert all(pattern.search(b) for b in bars if "%" in b), bars
    assert any("%" in b for b in bars), bars
    assert any(re.search(r"\b[1-6]/6 files", b) for b in bars), bars  # it counts
    final = frames[-1]
    assert not any("ETA" in ln for ln in final), final  # the bar is gone
    assert any(re.fullmatch(r"Files: 6 new, 0 changed, 0 unchanged; \d+ directories", ln)
               for ln in final), final
    assert any(re.match(r"Read 144\.0 MiB of 144\.0 MiB; added", ln) for ln in final), final

    target = tmp_path / "r"
    code, frames = in_pty("restore", "--store", store, "latest", str(target), "-v")
    assert code == 0, frames[-1]
    bars = bar_lines(frames, "restore")
    assert bars and all(re.search(rf"\d+/6 files  {SIZE}/144\.0 MiB", b) for b in bars), bars
    listed = [ln for ln in frames[-1] if ln.startswith("restored  ")]
    want = {f"restored  {target}{src}/f{i}.bin" for i in range(6)}
    assert set(listed) == want, frames[-1]  # each whole, on its own line, above the bar
    assert any("restored snapshot" in ln and "6 files" in ln for ln in frames[-1])

    code, frames = in_pty("verify", "--store", store, "--read-data")
    assert code == 0, frames[-1]
    bars = bar_lines(frames, "verify")
    assert bars and all(re.search(rf"\d+/\d+ packs  {SIZE}/{SIZE}", b) for b in bars), bars
    assert frames[-1][-1] == "" or "no problems found" in "\n".join(frames[-1])


def test_quiet_draws_no_bar(big: tuple[str, Path], tmp_path: Path) -> None:
    store, src = big
    code, frames = in_pty("backup", "--store", store, str(src), "-q")
    assert code == 0
    assert not bar_lines(frames, "backup") and not any(ln for f in frames for ln in f)
    for name, quiet in (("copy", []), ("quiet-copy", ["-q"])):
        dst = str(tmp_path / name)
        assert run_cli("init", "--store", dst, "--from", store).returncode == 0
        code, frames = in_pty("sync", store, dst, *quiet)
        assert code == 0, frames[-1:]
        shown = [ln for ln in (frames[-1] if frames else []) if ln]
        if quiet:
            assert not shown and not any(ln for f in frames for ln in f), frames[-1:]
        else:
            bars = bar_lines(frames, "sync")
            assert all(re.search(r"[01]/1 snapshots", b) for b in bars), bars
            assert shown[0].startswith("copied snapshot ") and "144.0 MiB" in shown[0]
            assert shown[-1].startswith("1 snapshot(s) copied, 0 already present")


def test_maintenance_bars_on_a_terminal(big: tuple[str, Path]) -> None:
    """forget --prune (gc's mark and repack) and repair draw the same bar: packs done of
    the total, IEC bytes done of the total, a rate and an ETA; each is gone from the final
    screen, which ends with the command's summary."""
    store, src = big
    assert run_cli("backup", "--store", store, str(src)).returncode == 0
    for i in range(3):
        (src / f"f{i}.bin").unlink()
    assert run_cli("backup", "--store", store, str(src)).returncode == 0
    code, frames = in_pty("forget", "--store", store, "--keep-last", "1", "--prune",
                          "--max-unused", "0")
    assert code == 0, frames[-1]
    assert bar_lines(frames, "gc: mark"), frames[-1]
    repack = bar_lines(frames, "gc: repack")
    assert repack and all(re.search(rf"\d+/\d+ packs  {SIZE}/{SIZE}  {SIZE}/s  ETA", b)
                          for b in repack), repack
    final = [ln for ln in frames[-1] if ln]
    assert not any("ETA" in ln for ln in final), final
    assert any(re.match(r"freed \S+ \S+, kept", ln) for ln in final), final
    code, frames = in_pty("repair", "--store", store)
    assert code == 0, frames[-1]
    read = bar_lines(frames, "repair: read")
    assert read and all(re.search(rf"\d+/\d+ packs  {SIZE}/{SIZE}  {SIZE}/s  ETA", b)
                        for b in read), read
    final = [ln for ln in frames[-1] if ln]
    assert not any("ETA" in ln for ln in final) and final[-1] == "nothing to repair", final
