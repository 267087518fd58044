"""Terminal escapes in names, hosts and tags never reach the operator's terminal raw.

A hostile source tree (a file named ``ESC [2J``, an OSC 52 clipboard write, ``\\r``,
``\\b``, a bidi override U+202E, a C1 CSI as one raw byte 0x9b and as U+009B, a latin-1
byte, a backslash) backed up with a hostile ``--host`` and ``--tag``, then listed by real
processes (``python -m casbackup``): ``snapshots`` (also ``--group-by host``), ``ls``
(``-l``: a hostile symlink target), ``find``, ``diff``, ``restore -v``, a backup's warning
about an unreadable hostile file (root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH
through ``setpriv``) and an error line naming a hostile path. Every stdout and stderr is
UTF-8 with no character but ``\\n`` that is not printable (so no C0/C1 control, DEL,
surrogate or U+202E), the escaped form (``cli/escape.py``) is what appears, and
``--json`` still gives the exact names. A hypothesis property checks that ``escape`` is
printable-only and injective (``_unescape`` inverts it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from casbackup.cli.escape import escape, escape_diagnostic
from tests.helpers import cli_env, make_store

ESC = b"e\x1b[2Jclear"
OSC = b"o\x1b]52;c;aGVsbG8=\x07sc"
CR = b"cr\rhidden"
BS = b"bs\b\bx"
RLO = "rlo\u202etxt.exe".encode()
CSI_BYTE = b"c\x9bsi"  # a raw C1 CSI: not UTF-8
CSI_CHAR = "u\u009bsi".encode()  # the same control as a UTF-8 character
LATIN1 = b"caf\xe9"
BACKSLASH = b"back\\slash"
FINE = "ünïcode €".encode()  # printable: shown as it is
NAMES = (ESC, OSC, CR, BS, RLO, CSI_BYTE, CSI_CHAR, LATIN1, BACKSLASH, FINE)
SHOWN = {  # what a terminal gets for each name
    ESC: r"e\x1b[2Jclear", OSC: r"o\x1b]52;c;aGVsbG8=\x07sc", CR: r"cr\x0dhidden",
    BS: r"bs\x08\x08x", RLO: r"rlo\u202etxt.exe", CSI_BYTE: r"c\x9bsi",
    CSI_CHAR: r"u\xc2\x9bsi", LATIN1: r"caf\xe9", BACKSLASH: r"back\\slash",
    FINE: "ünïcode €",
}
ROOT = b"s\x1b[31mrc"  # the backup root: in every path and in the snapshot's paths
HOST = "h\x1b[2Jost\u202e"
TAG = "t\x1b]0;pwned\x07ag"
LINK = b"link"
TARGET = b"/tmp/\x1b]52;c;eA==\x07"
UNREADABLE = b"secret\x1b[8m"
DROP_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search", "--"]


def _cli(*args: bytes | str, prefix: list[str] | None = None
         ) -> subprocess.CompletedProcess[bytes]:
    argv = [os.fsencode(a) for a in
            (*(prefix or []), sys.executable, "-m", "casbackup", *args)]
    return subprocess.run(argv, env=cli_env(), capture_output=True, timeout=300)


def _leaks(out: bytes) -> list[str]:
    """What in OUT a terminal could act on: a byte that is not UTF-8 (a raw 0x9b), or a
    character other than ``\\n`` that is not printable (C0/C1 controls, DEL, U+202E…)."""
    text = out.decode("utf-8", "surrogateescape")
    return sorted({repr(c) for c in text if c != "\n" and not c.isprintable()})


def _clean(out: bytes) -> str:
    """OUT as text, failing on anything a terminal could act on."""
    assert not _leaks(out), (_leaks(out), out)
    text = out.decode("utf-8")  # strict: a raw non-UTF-8 byte fails here
    assert not any(b < 0x20 and b != 0x0A for b in out), out
    assert not any(0x7F <= ord(c) <= 0x9F for c in text), text
    return text


class _Runs:
    """Real runs of the CLI, each expected to succeed; their stdout and stderr are checked
    together by ``clean`` so a failure names every command that leaked."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runs: dict[str, subprocess.CompletedProcess[bytes]] = {}

    def __call__(self, label: str, *args: bytes | str) -> None:
        r = _cli(args[0], "--store", self.url, *args[1:])
        assert r.returncode == 0, (label, r.stderr)
        self.runs[label] = r

    def clean(self) -> dict[str, str]:
        leaks = {f"{label} {stream}": bad for label, r in self.runs.items()
                 for stream, out in (("stdout", r.stdout), ("stderr", r.stderr))
                 if (bad := _leaks(out))}
        assert not leaks, leaks
        for r in self.runs.values():
            _clean(r.stderr)
        return {label: _clean(r.stdout) for label, r in self.runs.items()}


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[str, bytes]:
    root = os.path.join(os.fsencode(tmp_path), ROOT)
    os.makedirs(root)
    for name in NAMES:
        with open(os.path.join(root, name), "wb") as f:
            f.write(name)
    os.symlink(TARGET, os.path.join(root, LINK))
    url = str(tmp_path / "store")
    make_store(url).close()
    r = _cli("backup", "--store", url, "--host", HOST, "--tag", TAG, root)
    assert r.returncode == 0, r.stderr
    return url, root


def test_listings_escape_hostile_names_hosts_and_tags(hostile: tuple[str, bytes],
                                                      tmp_path: Path) -> None:
    url, root = hostile
    shown_root = escape(os.fsdecode(root))
    assert r"s\x1b[31mrc" in shown_root
    run = _Runs(url)
    run("snapshots", "snapshots")
    run("group-by", "snapshots", "--group-by", "host,tags")
    run("ls", "ls", "-R", "latest")
    run("ls -l", "ls", "-l", "latest", root)
    run("find", "find", "*")
    first = json.loads(_cli("snapshots", "--store", url, "--json").stdout)["id"]
    with open(os.path.join(root, b"new\x1b[Hname"), "wb") as f:
        f.write(b"n")
    os.unlink(os.path.join(root, CR))
    r = _cli("backup", "--store", url, "--host", HOST, root)
    assert r.returncode == 0, r.stderr
    run("diff", "diff", first, "latest")
    run("restore -v", "restore", "-v", "latest", str(tmp_path / "out"))
    out = run.clean()  # fails on main: every one of these printed escapes raw

    assert escape(HOST) in out["snapshots"] and escape(TAG) in out["snapshots"], out
    assert shown_root in out["snapshots"], out
    assert escape(HOST) in out["group-by"] and escape(TAG) in out["group-by"], out
    for name in NAMES:
        assert f"{shown_root}/{SHOWN[name]}\n" in out["ls"], (name, out)
    assert r"-> /tmp/\x1b]52;c;eA==\x07" in out["ls -l"], out
    assert escape(HOST) in out["find"] and f"{shown_root}/{SHOWN[OSC]}\n" in out["find"], out
    assert f"{shown_root}/new\\x1b[Hname" in out["diff"], out
    assert f"{shown_root}/{SHOWN[CR]}" in out["diff"], out
    for name in (ESC, CSI_BYTE, RLO):
        assert SHOWN[name] in out["restore -v"], out
    restored = os.path.join(os.fsencode(tmp_path / "out"), root.lstrip(b"/"))
    assert set(NAMES) - {CR} <= set(os.listdir(restored))  # the names stay exact on disk
    _json_keeps_the_exact_names(url)


def _json_keeps_the_exact_names(url: str) -> None:
    """--json is not escaped twice: its names, host and tags are the exact ones."""
    r = _cli("ls", "--store", url, "--json", "-R", "latest")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    names = {x["name"] for x in lines if x.get("message_type") == "node"}
    utf8 = {os.fsdecode(n) for n in NAMES if n not in (CSI_BYTE, LATIN1, CR)}
    assert utf8 <= names, names  # no \\x1b, no \\\\: the names themselves
    assert {r"c\x9bsi", r"caf\xe9"} <= names  # not UTF-8: docs/json.md's \\xNN
    r = _cli("snapshots", "--store", url, "--json")
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout.splitlines()[0])
    assert snap["hostname"] == HOST and snap["tags"] == [TAG], snap


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs root and setpriv to drop CAP_DAC_OVERRIDE")
def test_warning_and_error_lines_escape_names(hostile: tuple[str, bytes]) -> None:
    url, root = hostile
    secret = os.path.join(root, UNREADABLE)
    with open(secret, "wb") as f:
        f.write(b"x")
    os.chmod(secret, 0)
    r = _cli("backup", "--store", url, root, prefix=DROP_DAC)
    assert r.returncode == 3, r.stderr  # done, but a file could not be read
    err = _clean(r.stderr)
    assert r"secret\x1b[8m" in err and "warning" in err, err

    r = _cli("ls", "--store", url, "latest", os.path.join(root, b"gone\x1b]0;x\x07"))
    assert r.returncode != 0
    err = _clean(r.stderr)
    assert r"gone\x1b]0;x\x07" in err, err


def test_daemon_text_log_quotes_hostile_values(capsys: pytest.CaptureFixture[str]) -> None:
    """The daemon's text event line (its stderr, or the journal) JSON-quotes a value that
    is not printable: a watched path or tag with escapes is not written raw."""
    from casbackup.cli.cmd_daemon import EventLog

    EventLog(False)("watch-warning", job="w", path=os.fsdecode(ROOT + b"/" + RLO),
                    message=TAG, tags=[TAG, "x"])
    err = capsys.readouterr().err
    _clean(err.encode())
    assert ' path="s\\u001b[31mrc/rlo\\u202etxt.exe" ' in err, err
    assert ' tags="t\\u001b]0;pwned\\u0007ag,x"' in err, err


def _unescape(s: str) -> bytes:
    """The bytes ``escape`` was given (as ``os.fsencode``): its inverse."""
    out, i = bytearray(), 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
        elif s[i + 1] == "\\":
            out += b"\\"
            i += 2
        elif s[i + 1] == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            n = 4 if s[i + 1] == "u" else 8
            out += chr(int(s[i + 2:i + 2 + n], 16)).encode("utf-8", "surrogatepass")
            i += 2 + n
    return bytes(out)


@settings(max_examples=600)
@given(st.one_of(st.binary(max_size=24).map(os.fsdecode),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)))
@example("\x1b]52;c;aGk=\x07")
@example("\\x1b")
@example("\udc9b\u009b\x9b")
@example("\u2028\u202e\U000e0001\ufeff")
def test_escape_is_printable_and_injective(s: str) -> None:
    e = escape(s)
    assert e.isprintable(), e
    assert _unescape(e) == os.fsencode(s)  # so distinct names give distinct lines
    if s.isprintable() and "\\" not in s:
        assert e == s


@given(st.text(max_size=24))
def test_escape_is_printable_for_any_text(s: str) -> None:
    assert escape(s).isprintable()
    assert escape_diagnostic(s).isprintable()
    assert escape_diagnostic(s) == escape(s).replace("\\\\", "\\")
