"""The ``--json`` contract (docs/json.md): every command run with ``--json`` against real
stores writes only NDJSON lines on stdout, each valid against
docs/json-schema/casbackup-1.schema.json; errors end with an ``exit_error`` line whose
``code`` is the exit code; every command that has ``--json`` is run here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from casbackup.cli.app import build_command
from tests.helpers import PASSWORD, cli_env, json_lines, run_cli, tmpfs_mount

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "json-schema" / "casbackup-1.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# message types no run below can produce without a failing network or a daemon: the
# retry line has its own test (tests/cli/test_retry_output.py), the daemon logs to stderr
NOT_EXERCISED = {"retry", "event"}
# commands without --json (they write files or HTML) and the long-running daemon
NO_JSON = {"generate", "report", "daemon"}


def validated(stdout: bytes) -> list[dict[str, Any]]:
    lines = json_lines(stdout)
    for obj in lines:
        errors = sorted(VALIDATOR.iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{obj['message_type']} line {obj}: {errors[0].message}"
    return lines


class Runner:
    """Runs commands with ``--json`` and records what it ran and saw."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ran: set[str] = set()
        self.seen: set[str] = set()

    def __call__(self, *args: str, code: int = 0, stdin: bytes | None = None,
                 env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        r = run_cli(*args, "--json", env=env, input=stdin)
        assert r.returncode == code, (args, r.stdout[-2000:], r.stderr[-2000:])
        lines = validated(r.stdout)
        assert lines, f"{args}: no JSON line at all"
        self.ran.update({args[0], " ".join(args[:2])})
        self.seen.update(o["message_type"] for o in lines)
        if code:
            assert lines[-1]["message_type"] == "exit_error", lines[-1]
            assert lines[-1]["code"] == code
            assert lines[-1]["message"].split(": ", 1)[-1] in r.stderr.decode()
        return lines


def _command_words() -> set[str]:
    group = build_command(all_commands=True)
    words = set()
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            words.update(f"{name} {s}" for s in subs)
        else:
            words.add(name)
    return words


def test_every_command_speaks_the_schema(tmp_path: Path) -> None:
    run = Runner(tmp_path)
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "d" / "b.bin").write_bytes(os.urandom(200_000))
    (src / "unreadable").write_text("x")
    os.chmod(src / "unreadable", 0)
    store, dst = str(tmp_path / "store"), str(tmp_path / "dst")

    (init,) = run("init", "--store", store)
    assert init["message_type"] == "initialized" and init["repository"] == store
    # root reads anything: the unreadable file is an error line only for other users
    lines = run("backup", "--store", store, str(src), "-v", "--tag", "one",
                code=0 if os.geteuid() == 0 else 3)
    kinds = [o["message_type"] for o in lines]
    assert "status" in kinds and "verbose_status" in kinds
    summary = next(o for o in lines if o["message_type"] == "summary")
    status = [o for o in lines if o["message_type"] == "status"][-1]
    assert status["percent_done"] == 1.0 and status["files_done"] == status["total_files"]
    assert status["bytes_done"] == status["total_bytes"] == summary["total_bytes_processed"]
    (src / "a.txt").write_text("alpha two\n")
    run("backup", "--store", store, str(src), "--exclude", "nomatch*",
        code=0 if os.geteuid() == 0 else 3)
    snaps = run("snapshots", "--store", store)
    assert [s["message_type"] for s in snaps] == ["snapshot", "snapshot"]
    first, second = snaps[0]["id"], snaps[1]["id"]
    grouped = run("snapshots", "--store", store, "--group-by", "host")
    assert all(s["group_key"]["hostname"] for s in grouped)
    run("list", "backups", "--store", store)
    ls = run("ls", "--store", store, "latest", "-R")
    assert ls[0]["message_type"] == "snapshot" and {o["message_type"] for o in ls[1:]} == {
        "node"}
    run("find", "--store", store, "*.txt")
    changes = run("diff", "--store", store, first, second)
    assert changes[-1]["message_type"] == "summary" and changes[-1]["modified"] >= 1
    run("dump", "--store", store, "latest", "/", "--target", str(tmp_path / "d.tar"))
    restored = run("restore", "--store", store, "latest", str(tmp_path / "r"), "-v")
    assert any(o["message_type"] == "verbose_status" and o["action"] == "restored"
               for o in restored)
    last = [o for o in restored if o["message_type"] == "status"][-1]
    assert last["files_done"] == last["total_files"] >= 2
    run("verify", "--store", store, "--read-data")
    run("verify", "--store", store, "--repair-index")
    run("check", "--store", store)
    run("test", "--store", store)
    run("stats", "--store", store)
    run("key", "list", "--store", store)
    for kind in ("snapshots", "packs", "index", "keys"):
        names = run("list", kind, "--store", store)
        assert {o["kind"] for o in names} == {kind} and all(len(o["id"]) == 64 for o in names)
    r = run_cli("list", "locks", "--store", store, "--json")  # no lock is held: no line
    assert r.returncode == 0 and r.stdout == b"", (r.stdout, r.stderr)
    run.ran.add("list locks")
    pwfile = tmp_path / "pw2"
    pwfile.write_text("second password\n")
    (added,) = run("key", "add", "--store", store, "--new-password-file", str(pwfile))
    run("key", "passwd", "--store", store, "--new-password-file", str(pwfile))
    env2 = cli_env(CASBACKUP_PASSWORD="second password")
    keys = run("key", "list", "--store", store, env=env2)
    other = next(k["id"] for k in keys if not k["current"])
    run("key", "remove", "--store", store, other, env=env2)
    env = env2
    run("cat", "config", "--store", store, env=env)
    run("cat", "snapshot", first, "--store", store, env=env)
    run("unlock", "--store", store, env=env)
    run("status", "--store", store, env=env)
    run("init", "--store", dst, "--from", store, env=env)
    synced = run("sync", store, dst, env=env)
    assert [o["message_type"] for o in synced].count("copied") == 2
    sync_status = [o for o in synced if o["message_type"] == "status"][-1]
    assert sync_status["total_files"] == sync_status["files_done"] == 2
    forgot = run("forget", "--store", store, "--keep-last", "1", "--prune", env=env)
    assert [o["message_type"] for o in forgot][-1] == "summary"
    assert forgot[-1]["prune"] is not None and len(forgot[-1]["removed"]) == 1
    run("gc", "--store", store, env=env)
    run("prune", "--store", store, "--dry-run", env=env)
    run("repair", "--store", store, env=env)
    cfg = tmp_path / "casbackup.yaml"
    cfg.write_text(f"stores:\n  local:\n    url: {store}\n    password: {{env: "
                   f"CASBACKUP_PASSWORD}}\nsources:\n  src:\n    paths: [{src}]\n"
                   f"jobs:\n  nightly:\n    type: backup\n    cron: '0 3 * * *'\n"
                   f"    store: local\n    source: src\nstate: {tmp_path}/state.json\n")
    run("config", "check", "--config", str(cfg), env=env)
    run("status", "--config", str(cfg), env=env)
    run("test", "--config", str(cfg), env=env)
    _watch(run, tmp_path, store, dst, env)
    if os.geteuid() == 0:  # no unreadable file for root: a restore that runs out of space
        try:
            with tmpfs_mount(tmp_path / "small", "64k") as mnt:
                failed = run("restore", "--store", store, second, str(mnt), code=3, env=env)
            assert any(o["message_type"] == "error" for o in failed)
        except OSError:  # mounting refused (a container): no error line to check
            run.seen.add("error")

    # error paths: each ends with exit_error carrying the exit code
    run("snapshots", "--store", str(tmp_path / "nowhere"), code=10)
    run("snapshots", "--store", store, code=12)  # the old password was changed
    run("snapshots", "--store", store, "--no-such-option", code=2, env=env)
    run("snapshots", "--store", store, "--host", "nohost", code=4, env=env)
    run("restore", "--store", store, "latest", str(tmp_path / "r"), code=2, env=env)
    run("dump", "--store", store, "latest", code=2, env=env)
    run("cat", "nonsense", "--store", store, code=2, env=env)
    # the stores opened above have caches (their compact index) under the session's root
    caches = run("cache")
    assert caches[-1]["message_type"] == "summary" and caches[-1]["caches"] >= 1
    assert run("cache", "--cache-dir", str(tmp_path / "none"))[-1]["caches"] == 0
    # mount prints no JSON while mounted (restic's neither); its refusals are exit_error
    run("mount", "--store", store, str(tmp_path / "no-such-dir"), code=2, env=env)
    run("--version")
    assert {o["message_type"] for o in run("--version")} == {"version"}

    types = set(SCHEMA["properties"]["message_type"]["enum"])
    assert types - run.seen - NOT_EXERCISED == set(), "message types never produced"
    missing = {w for w in _command_words() if w.split()[0] not in NO_JSON} - run.ran
    assert not missing, f"commands not run with --json: {sorted(missing)}"


def _watch(run: Runner, tmp: Path, store: str, replica: str, env: dict[str, str]) -> None:
    """``watch --json --sync-to``: watching, the first snapshot, ready, a saved snapshot
    after a change and its replication, an unchanged rescan (SIGUSR1), then stop."""
    wsrc = tmp / "wsrc"
    wsrc.mkdir()
    (wsrc / "f").write_text("1")
    p = subprocess.Popen([sys.executable, "-m", "casbackup", "watch", "--store", store,
                          str(wsrc), "--debounce", "0.2", "--sync-to", replica, "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            seen.extend(validated(line))
            if seen[-1]["message_type"] == "ready":
                (wsrc / "f").write_text("2")
            if seen[-1]["message_type"] == "synced" and "ready" in [o["message_type"]
                                                                     for o in seen[:-1]]:
                p.send_signal(signal.SIGUSR1)  # a full rescan: nothing changed
            if seen[-1]["message_type"] == "unchanged":
                break
    finally:
        p.send_signal(signal.SIGINT)
        out, _err = p.communicate(timeout=60)
    seen.extend(validated(out))
    kinds = [o["message_type"] for o in seen]
    assert kinds[0] == "watching" and "saved" in kinds[kinds.index("ready"):], kinds
    assert "synced" in kinds and "unchanged" in kinds, kinds
    run.ran.add("watch")
    run.seen.update(kinds)


@pytest.mark.parametrize("args", [["backup", "/nonexistent-path"], ["gc"], ["verify"]])
def test_short_run_still_ends_with_one_line_per_contract(tmp_path: Path,
                                                         args: list[str]) -> None:
    """A failing or trivial run of a long command still speaks only JSON."""
    store = str(tmp_path / "s")
    assert run_cli("init", "--store", store).returncode == 0
    r = run_cli(*args[:1], "--store", store, *args[1:], "--json")
    lines = validated(r.stdout)
    assert lines and (r.returncode == 0) == (lines[-1]["message_type"] != "exit_error")
    if r.returncode:
        assert lines[-1]["code"] == r.returncode


def test_password_never_in_json(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    r = run_cli("init", "--store", store, "--json")
    assert PASSWORD.encode() not in r.stdout
