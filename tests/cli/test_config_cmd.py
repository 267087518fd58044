"""``casbackup config check``: a valid file is summarised with next runs, an invalid one
exits 2 naming file, line and key; the README's and the example's configurations are valid."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from casbackup.daemon.config import load_config, parse_config
from casbackup.errors import UsageError
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
stores:
  local:
    url: store
    password: {env: CASBACKUP_PASSWORD}
sources:
  src:
    paths: [src]
jobs:
  often:
    type: backup
    cron: "* * * * * */5"
    store: local
    source: src
metrics:
  listen: "127.0.0.1:9900"
  health_slack: 2
state: state/daemon.json
"""


def test_config_check_summarises_stores_sources_jobs_and_next_runs(tmp_path: Path) -> None:
    cfg = tmp_path / "casbackup.yaml"
    cfg.write_text(CONFIG)
    r = run_cli("config", "check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert f"{cfg}: valid" in out
    assert str(tmp_path / "store") in out and "env:CASBACKUP_PASSWORD" in out
    assert re.search(r"often +incremental backup of src on local, cron '\* \* \* \* \* \*/5', "
                     r"next \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out)
    r = run_cli("config", "check", "--config", str(cfg), "--json")
    data = json.loads(r.stdout)
    assert data["valid"] and data["jobs"][0]["name"] == "often"
    assert data["jobs"][0]["next_run"]
    assert data["metrics"] == "127.0.0.1:9900"


def test_config_check_invalid_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(CONFIG.replace('"* * * * * */5"', '"0 25 * * *"'))
    r = run_cli("config", "check", "--config", str(cfg))
    assert r.returncode == 2
    assert r.stdout == b""
    (line,) = r.stderr.decode().strip().splitlines()
    assert line.startswith(f"casbackup: {cfg}:11: jobs.often.cron: invalid cron expression")


def test_config_check_missing_file_exits_2(tmp_path: Path) -> None:
    r = run_cli("config", "check", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert b"no configuration file" in r.stderr


def test_config_state_and_health_slack() -> None:
    cfg = parse_config(CONFIG, "c.yaml", Path("/etc/casbackup"))
    assert cfg.state == "/etc/casbackup/state/daemon.json"
    assert cfg.metrics is not None and cfg.metrics.health_slack == 2.0
    default = parse_config(CONFIG.replace("  health_slack: 2\n", "")).metrics
    assert default is not None and default.health_slack == 0.5
    with pytest.raises(UsageError, match=r"c.yaml:16: metrics.health_slack: expected a number"):
        parse_config(CONFIG.replace("health_slack: 2", "health_slack: -1"), "c.yaml")


def test_readme_and_example_configurations_are_valid() -> None:
    example = load_config(ROOT / "examples" / "casbackup.yaml")
    assert example.state == "/var/lib/casbackup/state.json"
    assert example.metrics is not None and example.metrics.health_slack == 0.5
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Daemon and operations"):]
    block = section[section.index("```yaml\n") + 8:]
    cfg = parse_config(block[: block.index("```")], "README.md")
    assert {j.type for j in cfg.jobs.values()} == {"backup", "forget", "sync", "verify"}
    assert cfg.state == "/var/lib/casbackup/state.json"
