"""A configured store's local cache (``cache_dir``, ``no_cache``, ``cache_limit`` in
casbackup.yaml): parsed and checked, and used by a real backup job against moto S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from casbackup.daemon.config import load_config, parse_config
from casbackup.daemon.jobs import cache_settings, run_job
from casbackup.errors import UsageError
from casbackup.store import init_store
from tests.helpers import FAST_KDF, PASSWORD


def config_text(store: str, extra: str) -> str:
    keys = "".join(f"    {line}\n" for line in extra.splitlines())
    return (f'stores:\n  s3:\n    url: "{store}"\n    password: {{env: CASBACKUP_TEST_PW}}\n'
            f"{keys}sources:\n  src: {{paths: [src]}}\njobs:\n"
            '  bk: {type: backup, cron: "0 3 * * *", store: s3, source: src}\n')


def test_cache_keys_parse_relative_to_the_config(tmp_path: Path) -> None:
    cfg = parse_config(config_text("s3://b/p", "cache_dir: cache\ncache_limit: 64M"),
                       "casbackup.yaml", tmp_path)
    sc = cfg.stores["s3"]
    assert (sc.cache_dir, sc.no_cache, sc.cache_limit) == (str(tmp_path / "cache"), False,
                                                           64 << 20)
    settings = cache_settings(sc)
    assert (settings.directory, settings.tree_limit) == (tmp_path / "cache", 64 << 20)
    off = parse_config(config_text("s3://b/p", "no_cache: true"), "casbackup.yaml", tmp_path)
    assert cache_settings(off.stores["s3"]).directory is None


@pytest.mark.parametrize(("extra", "expected"), [
    ("cache_dir: c\nno_cache: true", "stores.s3.no_cache: cache_dir and no_cache exclude"),
    ("no_cache: yes please", "stores.s3.no_cache: expected true or false"),
    ("cache_limit: lots", "stores.s3.cache_limit: invalid size 'lots'"),
    ("cache_dirs: c", "stores.s3.cache_dirs: unknown key"),
])
def test_bad_cache_keys_name_line_and_key(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_config(config_text("s3://b/p", extra), "casbackup.yaml", tmp_path)
    assert expected in str(info.value) and "casbackup.yaml:" in str(info.value)


@pytest.mark.parametrize("no_cache", [False, True])
def test_a_backup_job_fills_the_configured_cache(s3_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 no_cache: bool) -> None:
    monkeypatch.setenv("CASBACKUP_TEST_PW", PASSWORD)
    init_store(s3_url, PASSWORD, kdf_n=FAST_KDF).close()
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "f.txt").write_text("cached\n")
    monkeypatch.setenv("CASBACKUP_CACHE_DIR", str(tmp_path / "default-cache"))
    extra = "no_cache: true" if no_cache else "cache_dir: job-cache"
    (tmp_path / "casbackup.yaml").write_text(config_text(s3_url, extra))
    out = run_job(load_config(tmp_path / "casbackup.yaml"), "bk")
    assert out.ok, out.error
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")
                   if p.is_file() and ("objects" in p.parts or "trees" in p.parts))
    if no_cache:
        assert files == []
    else:
        assert files and all(f.parts[0] == "job-cache" for f in files)
        kinds = {f.parts[2] for f in files}  # job-cache/<store id>/<objects|trees>/...
        assert kinds == {"objects", "trees"}
        assert any(f.parts[3] == "snapshots" and f.name == out.snapshot for f in files)
