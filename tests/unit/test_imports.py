"""What a command imports is part of what it costs (the *fixed cost* implementation note of
docs/design.md §11).

Structural, not timed: each command runs in a real process against a real local store and
reports ``sys.modules`` at exit; the reading commands and a small backup and restore must
not load the remote backends, the file watcher, the daemon, FUSE or numpy, and
``--version`` loads no store code at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from casbackup.store import init_store, paired_key
from tests.helpers import FAST_KDF, PASSWORD, cli_env, make_store, open_test_store, write_tree

# run the CLI as the entry point does, then write the names of the loaded modules
_PROBE = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "casbackup"
from casbackup.cli.app import main
main()
"""

# never needed by a command on a local store: the remote backends, the watcher, the
# daemon, FUSE, and the CLI's pretty printer
REMOTE_AND_DAEMON = ("boto3", "botocore", "paramiko", "watchdog", "rich", "casbackup.daemon",
                     "casbackup.mount", "casbackup.backends.s3", "casbackup.backends.sftp",
                     "casbackup.ops.watch", "ctypes.util")
# what only index-wide work (building a compact index, gc, verify) or maintenance needs
WHOLE_INDEX = ("numpy", "casbackup.store.consolidate", "casbackup.store.maintenance",
               "casbackup.store.blobtable", "casbackup.store.packer", "pyfastcdc",
               "concurrent.futures")
# what only forget (the retention policy) and backup (the exclude patterns) need: listing
# groups snapshots by ``ops.groupkey`` alone, and the cache's size limit parses
# ``$CASBACKUP_CACHE_LIMIT`` only when it is set (each module: ~5-9 ms and its dataclasses)
WRITERS_ONLY = ("casbackup.ops.retention", "casbackup.source.exclude", "pathspec")
# the store's write path (store/store.py builds its writer on the first write): a command
# that never writes a blob loads none of it
WRITE_PATH = ("casbackup.store.writer", "casbackup.store.packer", "casbackup.store.packsink")
# the layers ``Store`` is made of: every command that opens a store loads them
STORE_LAYERS = ("casbackup.store.objects", "casbackup.store.indexing",
                "casbackup.store.reading", "casbackup.store.snapshots",
                "casbackup.store.opening")


def loaded(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(out), *args], env=cli_env(),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return set(json.loads(out.read_text()))


def under(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("imports")
    make_store(work / "store").close()
    src = work / "src"
    write_tree(src, {"d": {f"f{i}": bytes([i]) * (100 + i) for i in range(20)}})
    proc = subprocess.run([sys.executable, "-m", "casbackup", "backup", "-s",
                           str(work / "store"), str(src)], env=cli_env(), capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    # a reading command now finds the compact index built (the writer's work, not theirs)
    subprocess.run([sys.executable, "-m", "casbackup", "restore", "-s", str(work / "store"),
                    "latest", str(work / "warm")], env=cli_env(), capture_output=True,
                   check=True, timeout=120)
    return work / "store", src


@pytest.mark.parametrize("command", [["snapshots"], ["ls", "latest"], ["cat", "config"],
                                     ["snapshots", "--json"], ["key", "list"]])
def test_reading_commands_load_only_what_they_use(store: tuple[Path, Path], tmp_path: Path,
                                                  command: list[str]) -> None:
    st, _ = store
    modules = loaded(tmp_path, *command, "-s", str(st))
    assert "casbackup.store.store" in modules  # the probe sees what the command loaded
    assert under(modules, STORE_LAYERS) == sorted(STORE_LAYERS)
    assert under(modules, REMOTE_AND_DAEMON) == []
    assert under(modules, WHOLE_INDEX) == []
    assert under(modules, WRITERS_ONLY) == []
    assert under(modules, WRITE_PATH) == []


def test_cache_limit_still_parses_its_size(store: tuple[Path, Path]) -> None:
    """The deferred import is taken when the limit is set: a bad size is still refused."""
    st, _ = store
    proc = subprocess.run([sys.executable, "-m", "casbackup", "snapshots", "-s", str(st)],
                          env={**cli_env(), "CASBACKUP_CACHE_LIMIT": "12 parsecs"},
                          capture_output=True, timeout=120)
    assert proc.returncode == 2, proc.stderr.decode()
    assert b"invalid size '12 parsecs'" in proc.stderr


def test_small_backup_and_restore_load_no_remote_or_daemon_code(store: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    st, src = store
    (src / "d" / "new").write_bytes(b"one more file")
    backup = loaded(tmp_path, "backup", "-s", str(st), str(src))
    assert "casbackup.ops.backup" in backup
    assert under(backup, REMOTE_AND_DAEMON) == []
    assert under(backup, WRITE_PATH) == sorted(WRITE_PATH)  # a writer loads the write path
    restore = loaded(tmp_path, "restore", "-s", str(st), "latest", str(tmp_path / "out"))
    assert "casbackup.ops.restore" in restore
    assert under(restore, REMOTE_AND_DAEMON) == []
    assert under(restore, ("casbackup.ops.backup", "casbackup.store.consolidate",
                           *WRITE_PATH)) == []


def test_version_loads_no_command_and_no_store(tmp_path: Path) -> None:
    modules = loaded(tmp_path, "--version")
    assert "casbackup.cli.app" in modules
    assert under(modules, ("casbackup.store", "casbackup.ops", "casbackup.backends",
                           "cryptography", *REMOTE_AND_DAEMON)) == []
    commands = [m for m in modules if m.startswith("casbackup.cli.cmd_")]
    assert commands == ["casbackup.cli.cmd_generate"]  # app.py's COMPLETE_VAR, nothing more


def test_sync_without_watch_loads_no_watcher(store: tuple[Path, Path], tmp_path: Path) -> None:
    st, _ = store
    with open_test_store(st) as src:
        master, chunker = paired_key(src)
    init_store(str(tmp_path / "dst"), PASSWORD, kdf_n=FAST_KDF, master=master,
               chunker=chunker).close()
    modules = loaded(tmp_path, "sync", str(st), str(tmp_path / "dst"))
    assert "casbackup.ops.sync" in modules
    assert under(modules, REMOTE_AND_DAEMON) == []
