"""``--cache-dir`` / ``--no-cache`` / ``$CASBACKUP_CACHE_LIMIT``: on every command that
opens a store, refused when contradictory (exit 2, one line, nothing written), and
obeyed by real processes against a remote store (moto S3)."""

from __future__ import annotations

from pathlib import Path

from casbackup.cli.app import build_command
from tests.helpers import cli_env, json_lines, json_result, run_cli


def cached_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_every_store_command_has_the_cache_options() -> None:
    root = build_command(all_commands=True)
    missing = []
    for name, cmd in root.commands.items():
        opts = {o for p in cmd.params for o in p.opts}
        if "--store" in opts and not {"--cache-dir", "--no-cache"} <= opts:
            missing.append(name)
    assert missing == []
    sync = {o for p in root.commands["sync"].params for o in p.opts}
    assert {"--cache-dir", "--no-cache"} <= sync  # two stores, given as arguments


def test_contradictory_or_bad_cache_options_are_usage_errors(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0
    p = run_cli("snapshots", "--store", str(store), "--no-cache", "--cache-dir",
                str(tmp_path / "c"))
    assert p.returncode == 2
    assert p.stderr.decode().strip().splitlines() == [
        "casbackup: --cache-dir and --no-cache exclude each other"]
    p = run_cli("snapshots", "--store", str(store),
                env=cli_env(CASBACKUP_CACHE_LIMIT="lots"))
    assert p.returncode == 2 and b"invalid size 'lots'" in p.stderr
    assert not (tmp_path / "c").exists()


def test_a_remote_store_caches_where_told_and_not_at_all_with_no_cache(
        s3_url: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("x\n")
    default = tmp_path / "default"
    env = cli_env(CASBACKUP_CACHE_DIR=str(default))
    assert run_cli("init", "--store", s3_url, "--no-cache", env=env).returncode == 0
    p = run_cli("backup", str(src), "--store", s3_url, "--no-cache", env=env)
    assert p.returncode == 0, p.stderr
    assert run_cli("snapshots", "--store", s3_url, "--no-cache", env=env).returncode == 0
    assert cached_files(default) == []  # --no-cache: nothing written outside the store
    told = tmp_path / "told"
    assert run_cli("snapshots", "--store", s3_url, "--cache-dir", str(told),
                   env=env).returncode == 0
    assert cached_files(default) == []
    # <store id>/objects/snapshots/<name>, the config and key it opened with
    # (<store id>/open/…) and the pointer from its URL to its id (locations/<digest>)
    stores = [d for d in told.iterdir() if d.name != "locations"]
    assert len(stores) == 1 and len(cached_files(told / "locations")) == 1
    (sid_dir,) = stores
    assert sorted(str(p.relative_to(sid_dir).parent) for p in cached_files(sid_dir)) == [
        "objects/snapshots", "open", "open/keys"]
    assert run_cli("snapshots", "--store", s3_url, env=env).returncode == 0
    assert cached_files(default)  # the default place ($CASBACKUP_CACHE_DIR)


def test_a_local_store_gets_no_object_cache(tmp_path: Path) -> None:
    """For a local directory the cache only costs (the implementation notes, design.md §11)."""
    store, src, cache = tmp_path / "store", tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    (src / "f").write_text("x\n")
    env = cli_env(CASBACKUP_CACHE_DIR=str(cache))
    assert run_cli("init", "--store", str(store), env=env).returncode == 0
    assert run_cli("backup", str(src), "--store", str(store), env=env).returncode == 0
    assert run_cli("snapshots", "--store", str(store), env=env).returncode == 0
    assert [p for p in cached_files(cache) if "objects" in p.parts or "trees" in p.parts] == []


def test_cache_cleanup_removes_only_unused_store_caches(tmp_path: Path) -> None:
    import os
    import time

    root = tmp_path / "cache"
    old, new = root / ("a" * 32), root / ("b" * 32)
    other = root / "not-a-store"
    for d in (old, new, other):
        (d / "trees" / "ab").mkdir(parents=True)
        (d / "trees" / "ab" / "entry").write_bytes(b"x" * 100)
    past = time.time() - 40 * 86400
    for p in [old, *old.rglob("*")]:
        os.utime(p, (past, past))
    p = run_cli("cache", "--cache-dir", str(root), "--json")
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout, "cache")
    assert json_result(p.stdout)["caches"] == 2
    assert [(r["store_id"], r["files"], r["size_bytes"], r["removed"]) for r in rows] == [
        ("a" * 32, 1, 100, False), ("b" * 32, 1, 100, False)]  # oldest use first
    p = run_cli("cache", "--cleanup", "--cache-dir", str(root))
    assert p.returncode == 0, p.stderr
    assert "2 cache(s), 1 removed" in p.stdout.decode()
    assert not old.exists() and new.exists() and other.exists()
    p = run_cli("cache", "--cleanup", "--max-age", "-1", "--cache-dir", str(root))
    assert p.returncode == 2 and new.exists()
