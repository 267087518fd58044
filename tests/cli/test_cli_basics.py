"""The basics a restic user expects (issue #15 point 4), through the real CLI: --version
(also as JSON), `check` as verify, shell completion that bash really completes with, man
pages that man/groff render, and a help text and a real metavar on every option."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from casbackup import __version__
from casbackup.cli.app import build_command, os_error_line
from casbackup.cli.clitree import options, takes_value, walk
from tests.helpers import json_lines, json_result, make_store, run_cli

GENERIC = {"TEXT", "INTEGER", "FLOAT", "BOOLEAN", "FILENAME", "<STR>", "<INT>",
           "<FLOAT>", "STR", "INT"}


def test_version_plain_and_json() -> None:
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.decode() == f"casbackup {__version__}\n"
    for args in (("--version", "--json"), ("--json", "--version")):  # either order
        r = run_cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert json.loads(r.stdout) == {"message_type": "version", "version": __version__}


def test_store_options_before_the_command_word_are_the_command_s(tmp_path: Path) -> None:
    """restic's global flags: ``--json``, ``--store``/``-r`` (also ``--store=X``) before the
    command mean the command's own options, for a command, a subcommand of a group and a
    command with a ``--`` in its arguments; an unknown leading option stays a usage
    error."""
    store = str(tmp_path / "store")
    make_store(store).close()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x")
    assert run_cli("backup", "-q", "--store", store, str(tmp_path / "src")).returncode == 0
    for before, after in ((("--json", "snapshots", "--store", store),
                           ("snapshots", "--store", store, "--json")),
                          (("-r", store, "--json", "snapshots"),
                           ("snapshots", "-r", store, "--json")),
                          ((f"--store={store}", "--json", "key", "list"),
                           ("key", "list", "--store", store, "--json")),
                          (("--json", "-q", "--store", store, "find", "--", "f"),
                           ("find", "--store", store, "--json", "--", "f"))):
        a, b = run_cli(*before), run_cli(*after)
        assert a.returncode == b.returncode == 0, (before, a.stderr, b.stderr)
        types = [d["message_type"] for d in json_lines(a.stdout)]
        assert types and types == [d["message_type"] for d in json_lines(b.stdout)], types
    r = run_cli("--json", "snapshots", "--store", str(tmp_path / "nowhere"))
    assert r.returncode != 0 and json_lines(r.stdout, "exit_error"), r.stdout
    r = run_cli("--no-such-option", "--store", store, "snapshots")
    assert r.returncode == 2 and b"--no-such-option" in r.stderr, r.stderr


def test_an_os_error_names_its_path_only_when_it_has_one() -> None:
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device")) == \
        "No space left on device"
    assert os_error_line(OSError(errno.EACCES, "Permission denied", "/x/y")) == \
        "Permission denied: /x/y"


def test_every_option_has_help_and_a_real_metavar() -> None:
    root = build_command(all_commands=True)
    seen = 0
    bad = []
    for words, cmd in walk(root):
        for opt in options(cmd):
            seen += 1
            where = f"{' '.join(words) or 'casbackup'} {opt.opts[0]}"
            if not (opt.help or "").strip():
                bad.append(f"{where}: no help")
            if takes_value(opt):
                meta = (opt.metavar or "").strip("[]. ").upper()
                if not meta or meta in GENERIC or meta.startswith("<"):
                    bad.append(f"{where}: metavar {opt.metavar!r}")
    assert seen > 100 and bad == []
    assert "check" in root.commands and "generate" in root.commands


def test_check_is_verify(tmp_path: Path) -> None:
    s, src = tmp_path / "store", tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    assert run_cli("init", "--store", str(s)).returncode == 0
    assert run_cli("backup", "--store", str(s), str(src), "-q").returncode == 0
    a = run_cli("verify", "--store", str(s), "--json")
    b = run_cli("check", "--store", str(s), "--json")
    assert a.returncode == b.returncode == 0
    strip = lambda out: {k: v for k, v in json_result(out).items() if "duration" not in k}  # noqa: E731
    assert strip(a.stdout) == strip(b.stdout)
    packs = [p for p in (s / "packs").rglob("*") if p.is_file()]
    assert packs
    for pack in packs:
        pack.write_bytes(b"\0" * pack.stat().st_size)
    assert run_cli("check", "--store", str(s), "--read-data").returncode == 13


@pytest.fixture
def casbackup_on_path(tmp_path: Path) -> dict[str, str]:
    """A `casbackup` executable (as pip installs it) first on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "casbackup"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m casbackup \"$@\"\n")
    exe.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    return env


def _bash_complete(script: Path, env: dict[str, str], line: str) -> list[str]:
    words = line.split(" ")
    prog = (f"source {script}\nCOMP_WORDS=({' '.join(words)} '')\n"
            f"COMP_CWORD={len(words)}\n" if line.endswith(" ") else
            f"source {script}\nCOMP_WORDS=({line})\nCOMP_CWORD={len(words) - 1}\n")
    prog += "_casbackup_completion casbackup\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
    r = subprocess.run(["bash", "--norc", "-c", prog], env=env, capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().split()


def test_bash_completion_completes_commands_and_options(
        tmp_path: Path, casbackup_on_path: dict[str, str]) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = tmp_path / "casbackup.bash"
    r = run_cli("generate", "--bash-completion", str(script), "--zsh-completion",
                str(tmp_path / "_casbackup"), "--fish-completion", str(tmp_path / "c.fish"))
    assert r.returncode == 0, r.stderr
    assert "compdef" in (tmp_path / "_casbackup").read_text()
    assert "complete" in (tmp_path / "c.fish").read_text()
    assert {"backup", "snapshots", "check"} <= set(_bash_complete(script, casbackup_on_path,
                                                                  "casbackup "))
    assert _bash_complete(script, casbackup_on_path, "casbackup sna") == ["snapshots"]
    opts = _bash_complete(script, casbackup_on_path, "casbackup backup --exclude-")
    assert {"--exclude-if-present", "--exclude-larger-than", "--exclude-caches"} <= set(opts)


def test_man_pages_render(tmp_path: Path) -> None:
    r = run_cli("generate", "--man", str(tmp_path / "man"))
    assert r.returncode == 0, r.stderr
    pages = sorted(p.name for p in (tmp_path / "man").iterdir())
    assert {"casbackup.1", "casbackup-backup.1", "casbackup-key-add.1",
            "casbackup-check.1"} <= set(pages)
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("no groff to render with")
    r = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(tmp_path / "man" /
                        "casbackup-backup.1")], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stderr == b""  # no roff warnings
    r = subprocess.run([groff, "-man", "-Tascii", str(tmp_path / "man" / "casbackup-backup.1")],
                       capture_output=True, timeout=60, env={**os.environ, "GROFF_NO_SGR": "1"})
    text = re.sub(r".\x08", "", r.stdout.decode("ascii", "replace"))  # overstrike bold
    assert "--exclude-larger-than SIZE" in " ".join(text.split())
    assert "Leave out files larger than SIZE" in " ".join(text.split())


def test_restore_takes_its_target_as_restic_s_target_option(tmp_path: Path) -> None:
    """``restore SNAP --target DIR`` (restic) restores as ``restore SNAP DIR`` does; two
    different targets, or none, are a usage error (exit 2) that writes nothing."""
    store = str(tmp_path / "store")
    make_store(store).close()
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"restic's way")
    assert run_cli("backup", "-q", "--store", store, str(src)).returncode == 0
    for args in (("--target", str(tmp_path / "a")), ("-t", str(tmp_path / "b")),
                 (str(tmp_path / "c"), "--target", str(tmp_path / "c"))):
        r = run_cli("restore", "-q", "--store", store, "latest", *args)
        assert r.returncode == 0, (args, r.stderr)
        out = Path(args[-1])
        assert (out / str(src).lstrip("/") / "f").read_bytes() == b"restic's way"
    for args, says in (((str(tmp_path / "d"), "--target", str(tmp_path / "e")),
                        b"two targets given"), ((), b"no target given")):
        r = run_cli("restore", "--store", store, "latest", *args)
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr)
        assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()
