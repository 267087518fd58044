"""Bad `init` input and credentials in store URLs (issue #11, "Signals, exit codes and bad
input"): refused with exit 2 and one line, nothing written, no secret echoed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbackup.store import init_store
from tests.conftest import MotoS3
from tests.helpers import FAST_KDF, PASSWORD, json_lines, run_cli


def _one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("casbackup: "), lines
    return lines[0]


@pytest.mark.parametrize("args", [
    ["--compression-level", "99"], ["--compression-level", "0"],
    ["--compression-level", "-5"], ["--pack-size", "-1"], ["--pack-size", "0"],
    ["--pack-size", "1025"], ["--pack-size", "1", "--compression-level", "23"],
])
def test_bad_init_values_exit_2_and_write_nothing(tmp_path: Path, args: list[str]) -> None:
    target = tmp_path / "new"
    r = run_cli("init", "--store", str(target), *args)
    assert r.returncode == 2, r.stderr
    line = _one_line(r.stderr)
    assert "compression level" in line or "pack size" in line
    assert not target.exists()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(level=st.integers(-2**40, 2**40), pack_mib=st.integers(-2**20, 2**20))
def test_init_accepts_exactly_the_sane_parameters(tmp_path: Path, level: int,
                                                  pack_mib: int) -> None:
    """In process (no scrypt cost worth a subprocess): a store is created iff level is in
    1..22 and the pack size in 1..1024 MiB, and whatever is created opens again."""
    from casbackup.errors import UsageError
    from casbackup.store import open_store

    target = tmp_path / uuid.uuid4().hex
    ok = 1 <= level <= 22 and 1 <= pack_mib <= 1024
    try:
        init_store(str(target), PASSWORD, compression_level=level, pack_size=pack_mib << 20,
                   kdf_n=FAST_KDF).close()
    except UsageError as e:
        assert not ok and "\n" not in str(e)
        assert not target.exists()
    else:
        assert ok
        with open_store(str(target), lambda: PASSWORD) as st_:
            assert st_.config.compression_level == level
            assert st_.config.pack_size == pack_mib << 20


def test_init_into_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "photos"
    (d / "2024").mkdir(parents=True)
    (d / "2024" / "img.jpg").write_bytes(b"\xff\xd8 not mine")
    before = sorted(p.name for p in d.rglob("*"))
    r = run_cli("init", "--store", str(d))
    assert r.returncode == 2
    assert "not empty" in _one_line(r.stderr)
    assert sorted(p.name for p in d.rglob("*")) == before
    # an empty subdirectory alone, or a dotfile, is also someone else's
    for name in ("empty-dir", ".hidden"):
        e = tmp_path / f"only-{name}"
        e.mkdir()
        (e / name).mkdir() if name == "empty-dir" else (e / name).write_text("x")
        assert run_cli("init", "--store", str(e)).returncode == 2


def test_init_into_an_empty_dir_or_a_crashed_init_works_and_a_store_is_refused(
        tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("init", "--store", str(empty)).returncode == 0
    r = run_cli("init", "--store", str(empty))
    assert r.returncode == 2 and "already exists" in _one_line(r.stderr)
    # a crashed init leaves its key object and no config: init again works
    crashed = tmp_path / "crashed"
    init_store(str(crashed), PASSWORD, kdf_n=FAST_KDF).close()
    (crashed / "config").unlink()
    r = run_cli("init", "--store", str(crashed))
    assert r.returncode == 0, r.stderr


def test_init_into_a_non_empty_s3_prefix_is_refused(s3_server: MotoS3) -> None:
    import boto3  # type: ignore[import-untyped]

    boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1").put_object(
        Bucket=s3_server.bucket, Key="occupied/report.pdf", Body=b"%PDF")
    r = run_cli("init", "--store", s3_server.url("occupied"))
    assert r.returncode == 2, r.stderr
    assert "not empty" in _one_line(r.stderr)


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize("template", [
    "s3://AKIAEXAMPLE:{s}@{bucket}/p?endpoint={ep}&region=us-east-1",
    "s3://AKIAEXAMPLE:{s}@{bucket}",
    "s3://:{s}@{bucket}/x",
    "sftp://user:{s}@127.0.0.1:1/path",
    "sftp://user:{s}@/path",
    "SFTP://user:{s}@host/p",
    "weird://u:{s}@host",
])
@pytest.mark.parametrize("command", [
    ["init"], ["snapshots"], ["backup", "."], ["status", "--json"], ["key", "list", "--json"],
])
def test_credentials_in_a_url_are_refused_without_echoing_them(
        s3_server: MotoS3, template: str, command: list[str]) -> None:
    from urllib.parse import quote

    url = template.format(s=SECRET, bucket=s3_server.bucket, ep=quote(s3_server.endpoint))
    r = run_cli(*command, "--store", url)
    out = r.stdout + r.stderr
    assert SECRET.encode() not in out and quote(SECRET).encode() not in out
    if command[0] == "status":
        assert r.returncode != 0
        rows = json_lines(r.stdout)
        assert rows[-1]["message_type"] == "exit_error"
        assert "credentials" in json.dumps(rows) or "password" in json.dumps(rows)
    else:
        assert r.returncode == 2, out
        line = _one_line(r.stderr)
        assert "credentials" in line or "password" in line


@pytest.mark.parametrize("url", [f"s3://AKIAEXAMPLE:{SECRET}@bucket/p",
                                 f"sftp://backup:{SECRET}@nas.example/srv"])
def test_daemon_config_with_a_credential_url_is_refused_naming_file_and_line(
        tmp_path: Path, url: str) -> None:
    cfg = tmp_path / "casbackup.yaml"
    cfg.write_text(f"stores:\n  main:\n    url: {url}\n")
    r = run_cli("config", "check", "--config", str(cfg))
    assert r.returncode == 2
    line = _one_line(r.stderr)
    assert SECRET not in (r.stdout + r.stderr).decode()
    assert "casbackup.yaml:3: stores.main.url:" in line
