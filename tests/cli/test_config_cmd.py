"""``casbackup config check``: a valid file is summarised with next runs, an invalid one
exits 2 naming file, line and key; the README's and the example's configurations are valid."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from casbackup.daemon.config import load_config, parse_config
from casbackup.errors import UsageError
from casbackup.ops.snapsel import resolve
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
    (tmp_path / "src").mkdir()
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


BROKEN = """\
stores:
  local: {url: store, pasword: {env: X}}
  good: {url: store2}
sources:
  src: {paths: [src], exclude_cache: true}
  other: {paths: [other]}
jobs:
  a: {type: backup, cron: "0 3 * * *", store: local, source: src}
  b: {type: backup, cron: "0 25 * * *", store: good, source: other}
  c: {type: sync, cron: "@daily", store: good, to: goood}
  d: {type: verify, cron: "@fortnightly", store: good}
metrics: {listen: "nowhere"}
"""


def test_config_check_reports_every_problem_once_with_suggestions(tmp_path: Path) -> None:
    """All problems in one run, in line order, each once: an entry that is invalid itself
    (store ``local``, source ``src``) is not reported again by the jobs that use it."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BROKEN)
    r = run_cli("config", "check", "--config", str(cfg))
    assert r.returncode == 2
    lines = r.stderr.decode().strip().removeprefix("casbackup: ").splitlines()
    assert [ln.split(": ", 2)[0:2] for ln in lines] == [
        [f"{cfg}:2", "stores.local.pasword"],
        [f"{cfg}:5", "sources.src.exclude_cache"],
        [f"{cfg}:9", "jobs.b.cron"],
        [f"{cfg}:10", "jobs.c.to"],
        [f"{cfg}:11", "jobs.d.cron"],
        [f"{cfg}:12", "metrics.listen"],
    ]
    assert "did you mean 'password'?" in lines[0]
    assert "did you mean 'exclude_caches'?" in lines[1]
    assert "did you mean 'good'?" in lines[3]
    assert "known aliases are @yearly" in lines[4]


def test_config_check_and_test_refuse_missing_source_paths(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.replace("paths: [src]", "paths: [src, gone]\n    exclude_file: x.txt"))
    for cmd in (("config", "check"), ("test",)):
        r = run_cli(*cmd, "--config", str(cfg))
        assert r.returncode == 2, r.stderr
        err = r.stderr.decode()
        assert f"sources.src.paths: {tmp_path / 'gone'} does not exist" in err
        assert f"exclude file {tmp_path / 'x.txt'} does not exist" in err
        assert b"self-test passed" not in r.stdout


def test_yaml_source_filters_reach_the_archiver(tmp_path: Path) -> None:
    """exclude_caches and exclude_files in YAML do what --exclude-caches and repeated
    --exclude-file do on the CLI: a real backup job on a real store leaves them out."""
    from casbackup.daemon.jobs import run_job
    from tests.helpers import make_store, open_test_store

    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "cache" / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    (src / "cache" / "big").write_text("cached")
    (src / "keep.txt").write_text("k")
    (src / "a.log").write_text("l")
    (src / "b.tmp").write_text("t")
    (src / "SHOUT.BAK").write_text("b")  # iexcludes: *.bak
    (src / "marked").mkdir()
    (src / "marked" / ".nobackup").write_text("")  # exclude_if_present: .nobackup
    (src / "marked" / "inside").write_text("i")
    (src / "huge.bin").write_bytes(b"x" * 20000)  # exclude_larger_than: 10K
    (tmp_path / "one.txt").write_text("*.log\n")
    (tmp_path / "two.txt").write_text("*.tmp\n")
    make_store(tmp_path / "store").close()
    text = CONFIG.replace("    paths: [src]", "    paths: [src]\n    exclude_caches: true\n"
                          "    exclude_files: [one.txt, two.txt]\n    iexcludes: ['*.bak']\n"
                          "    exclude_if_present: [.nobackup]\n    exclude_larger_than: 10K")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    config = load_config(cfg)
    assert config.sources["src"].exclude_caches
    import os

    os.environ.setdefault("CASBACKUP_PASSWORD", "test-password")
    out = run_job(config, "often")
    assert out.ok, out.error
    with open_test_store(tmp_path / "store") as st:
        snap = resolve(st, "latest")
        names = []
        tree = st.load_tree(snap.tree)
        for part in str(src).strip("/").split("/"):
            node = next(n for n in tree.nodes if n.name == part.encode())
            assert node.subtree is not None
            tree = st.load_tree(node.subtree)
        names = sorted(n.name for n in tree.nodes)
    assert b"keep.txt" in names
    assert b"a.log" not in names and b"b.tmp" not in names
    assert b"SHOUT.BAK" not in names and b"huge.bin" not in names
    assert config.sources["src"].exclude_larger_than == 10 << 10
    cache = [n for n in names if n == b"cache"]
    assert cache == [] or _cache_is_empty(tmp_path / "store", src)


def _cache_is_empty(store: Path, src: Path) -> bool:
    from tests.helpers import open_test_store

    with open_test_store(store) as st:
        tree = st.load_tree(resolve(st, "latest").tree)
        for part in (*str(src).strip("/").split("/"), "cache"):
            node = next(n for n in tree.nodes if n.name == part.encode())
            assert node.subtree is not None
            tree = st.load_tree(node.subtree)
        return [n.name for n in tree.nodes] in ([], [b"CACHEDIR.TAG"])
