"""casbackup.yaml loading (casbackup.daemon.config): schema, line-numbered errors, secrets."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from casbackup.daemon.config import (
    Config,
    PasswordRef,
    find_config_path,
    load_config,
    parse_config,
    resolve_password,
)
from casbackup.errors import UsageError
from casbackup.ops.retention import Duration, Policy

BASE = """\
stores:
  main:
    url: /srv/main
    password: {env: CASBACKUP_PASSWORD}
  second:
    url: s3://bucket/prefix
sources:
  home:
    paths: [/home]
"""


def parse(text: str, base: str = BASE) -> Config:
    return parse_config(base + textwrap.dedent(text), "casbackup.yaml", Path("/etc/cb"))


def error_of(text: str, base: str = BASE) -> str:
    with pytest.raises(UsageError) as info:
        parse(text, base)
    return str(info.value)


# --- a complete, valid configuration ---------------------------------------------------


def test_parse_full_configuration() -> None:
    config = parse_config(
        textwrap.dedent("""\
        stores:
          main: {url: store, password: {file: ../secret}}
          offsite: {url: "sftp://u@host/backups", password: {command: "pass show cb"}}
          plain: {url: ~/plain}
        sources:
          home:
            paths: [/home, docs]
            excludes: ["*.tmp"]
            exclude_file: excludes.txt
            one_file_system: true
        jobs:
          nightly:
            type: backup
            cron: "0 2 * * *"
            store: main
            source: home
            backup_type: full
            tags: [nightly, full]
            retries: 3
            retry_delay: 0.5
            catch_up: true
            timeout: 3600
          forget:
            type: forget
            cron: "0 5 * * *"
            store: main
            policy: {keep_daily: 7, keep_within: 1y2m, keep_tags: [keep], group_by: [host]}
            prune: true
          verify: {type: verify, cron: "0 6 * * 0", store: main, read_data_subset: 1/7}
          sync: {type: sync, cron: "0 7 * * *", store: main, to: offsite}
          gc: {type: gc, cron: "*/10 * * * * 30", store: main}
        watches:
          - {source: home, store: main, debounce: 0.5, max_delay: 10, sync_to: [offsite]}
        metrics: {listen: "[::1]:9900"}
        """),
        "/etc/cb/casbackup.yaml",
        Path("/etc/cb"),
    )
    assert config.path == "/etc/cb/casbackup.yaml"
    assert config.stores["main"].url == "/etc/cb/store"
    assert config.stores["main"].password == PasswordRef("file", "/etc/secret")
    assert config.stores["offsite"].url == "sftp://u@host/backups"
    assert config.stores["offsite"].password == PasswordRef("command", "pass show cb")
    assert config.stores["plain"].url == os.path.expanduser("~/plain")
    assert config.stores["plain"].password is None
    home = config.sources["home"]
    assert home.paths == ("/home", "/etc/cb/docs")
    assert (home.excludes, home.exclude_file, home.one_file_system) == (
        ("*.tmp",),
        "/etc/cb/excludes.txt",
        True,
    )
    nightly = config.jobs["nightly"]
    assert (nightly.type, nightly.cron, nightly.store, nightly.source) == (
        "backup",
        "0 2 * * *",
        "main",
        "home",
    )
    assert (nightly.backup_type, nightly.tags, nightly.retries) == ("full", ("nightly", "full"), 3)
    assert (nightly.retry_delay, nightly.catch_up, nightly.timeout) == (0.5, True, 3600.0)
    assert config.jobs["forget"].policy == Policy(
        keep_daily=7,
        keep_within=Duration(years=1, months=2),
        keep_tags=("keep",),
        group_by=("host",),
    )
    assert config.jobs["forget"].prune is True
    assert config.jobs["verify"].read_data_subset == "1/7"
    assert config.jobs["sync"].to == "offsite"
    gc = config.jobs["gc"]
    assert (gc.retries, gc.retry_delay, gc.catch_up, gc.timeout) == (0, 60.0, False, None)
    (watch,) = config.watches
    assert (watch.source, watch.store, watch.debounce, watch.max_delay, watch.sync_to) == (
        "home",
        "main",
        0.5,
        10.0,
        ("offsite",),
    )
    assert config.metrics is not None
    assert (config.metrics.host, config.metrics.port) == ("::1", 9900)


def test_defaults_of_a_backup_job_and_a_watch() -> None:
    config = parse("""\
        jobs:
          b: {type: backup, cron: "0 * * * *", store: main, source: home}
        watches:
          - {source: home, store: main}
        """)
    job = config.jobs["b"]
    assert (job.backup_type, job.tags, job.retries, job.catch_up) == ("incremental", (), 0, False)
    watch = config.watches[0]
    assert (watch.debounce, watch.max_delay, watch.sync_to) == (2.0, 60.0, ())
    assert config.metrics is None


def test_yaml_merge_keys_share_job_defaults() -> None:
    config = parse("""\
        jobs:
          a: &defaults {type: backup, cron: "0 1 * * *", store: main, source: home, retries: 2}
          b:
            <<: *defaults
            cron: "0 2 * * *"
        """)
    assert config.jobs["b"].cron == "0 2 * * *"
    assert config.jobs["b"].retries == 2


# --- errors name file, line and key ------------------------------------------------------


def test_invalid_cron_names_file_line_and_key() -> None:
    message = error_of("""\
        jobs:
          nightly:
            type: backup
            cron: "0 25 * * *"
            store: main
            source: home
        """)
    assert message == (
        "casbackup.yaml:13: jobs.nightly.cron: invalid cron expression '0 25 * * *': out of range"
    )


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("1 2 3", "expected 5 fields"),
        ("* * * * * * 2030", "expected 5 fields"),
        ("0 0 31 2 *", "never fires"),
        ("bogus * * * *", "not understood"),
    ],
)
def test_invalid_cron_expressions(cron: str, reason: str) -> None:
    message = error_of(f"""\
        jobs:
          j: {{type: gc, cron: "{cron}", store: main}}
        """)
    assert message.startswith(f"casbackup.yaml:11: jobs.j.cron: invalid cron expression {cron!r}")
    assert reason in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jobs:\n  j: {type: gc, cron: '* * * * *', store: main, colour: red}\n",
         "casbackup.yaml:11: jobs.j.colour: unknown key (expected one of type, cron, store"),
        ("extra: 1\n", "casbackup.yaml:10: <top>.extra: unknown key"),
        ("jobs:\n  j: {type: gc, cron: '* * * * *', store: nowhere}\n",
         "casbackup.yaml:11: jobs.j.store: unknown store 'nowhere' (defined: main, second)"),
        ("jobs:\n  j: {type: backup, cron: '* * * * *', store: main, source: etc}\n",
         "casbackup.yaml:11: jobs.j.source: unknown source 'etc' (defined: home)"),
        ("jobs:\n  j: {type: backup, cron: '* * * * *', store: main}\n",
         "casbackup.yaml:11: jobs.j: missing required key 'source' for a backup job"),
        ("jobs:\n  j: {type: gc, cron: '* * * * *', store: main, source: home}\n",
         "casbackup.yaml:11: jobs.j.source: not allowed for a gc job"),
        ("jobs:\n  j: {type: restore, cron: '* * * * *', store: main}\n",
         "casbackup.yaml:11: jobs.j.type: 'restore' is not one of backup, dump, sync, forget, gc"),
        ("jobs:\n  j: {type: gc, store: main}\n",
         "casbackup.yaml:11: jobs.j: missing required key 'cron'"),
        ("jobs:\n  j: {type: sync, cron: '* * * * *', store: main, to: main}\n",
         "casbackup.yaml:11: jobs.j.to: a sync job needs two different stores"),
        ("jobs:\n  j:\n    type: backup\n    backup_type: weekly\n    cron: '@ * * * *'\n",
         "casbackup.yaml:12: jobs.j: missing required key 'store'"),
        ("jobs:\n  j: {type: backup, cron: '0 * * * *', store: main, source: home,\n"
         "      backup_type: weekly}\n",
         "casbackup.yaml:12: jobs.j.backup_type: 'weekly' is not one of full, incremental"),
        ("jobs:\n  j: {type: gc, cron: '* * * * *', store: main, retries: -1}\n",
         "casbackup.yaml:11: jobs.j.retries: expected an integer >= 0, not -1"),
        ("jobs:\n  j: {type: gc, cron: '* * * * *', store: main, catch_up: maybe}\n",
         "casbackup.yaml:11: jobs.j.catch_up: expected true or false, not 'maybe'"),
        ("jobs:\n  j: {type: gc, cron: '* * * * *', store: main, timeout: 0}\n",
         "casbackup.yaml:11: jobs.j.timeout: must be more than 0 seconds"),
        ("jobs:\n  j: {type: verify, cron: '* * * * *', store: main, read_data_subset: 8/7}\n",
         "casbackup.yaml:11: jobs.j.read_data_subset: --read-data-subset 8/7: need 1 <= N <= M"),
        ("jobs:\n  j: {type: verify, cron: '* * * * *', store: main, read_data_subset: 0%}\n",
         "casbackup.yaml:11: jobs.j.read_data_subset: --read-data-subset '0%': use N/M or P%"),
        ("jobs:\n  'bad name': {type: gc, cron: '* * * * *', store: main}\n",
         "casbackup.yaml:11: jobs.bad name: invalid name"),
        ("jobs:\n  j: {type: gc, cron: '* * * * *', store: main}\n  j: {type: gc}\n",
         "casbackup.yaml:12: jobs.j: duplicate key"),
        ("watches:\n  - {source: home, store: main, sync_to: [main]}\n",
         "casbackup.yaml:11: watches[0].sync_to[0]: cannot sync a store to itself"),
        ("watches:\n  - {source: home, store: main, debounce: 5, max_delay: 1}\n",
         "casbackup.yaml:11: watches[0].max_delay: must be >= debounce (5)"),
        ("watches:\n  - source: home\n    store: nowhere\n",
         "casbackup.yaml:12: watches[0].store: unknown store 'nowhere'"),
        ("watches: {source: home}\n", "casbackup.yaml:10: watches: expected a list"),
        ("metrics: {listen: 9900}\n",
         "casbackup.yaml:10: metrics.listen: expected a non-empty string, not 9900"),
        ("metrics: {listen: 'localhost:99999'}\n",
         "casbackup.yaml:10: metrics.listen: expected HOST:PORT, not 'localhost:99999'"),
    ],
)  # fmt: skip
def test_errors_name_line_and_key(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("{}", "jobs.f.policy: no policy given"),
        ("{keep_daily: 0}", "jobs.f.policy: no policy given"),
        ("{keep_daily: seven}", "jobs.f.policy.keep_daily: expected a count (-1: unlimited)"),
        ("{keep_daily: -2}", "jobs.f.policy.keep_daily: expected a count (-1: unlimited)"),
        ("{keep_within: 7w}", "jobs.f.policy.keep_within: invalid duration '7w'"),
        ("{keep_last: 1, group_by: [user]}", "jobs.f.policy: invalid group_by 'user'"),
        ("{keep_last: 1, keep_lats: 2}", "jobs.f.policy.keep_lats: unknown key"),
    ],
)
def test_policy_errors(policy: str, expected: str) -> None:
    message = error_of(f"""\
        jobs:
          f:
            type: forget
            cron: "0 5 * * *"
            store: main
            policy: {policy}
        """)
    assert message.startswith("casbackup.yaml:15: ")
    assert expected in message


def test_literal_password_is_refused_without_echoing_it() -> None:
    base = "stores:\n  main:\n    url: /srv\n    password: hunter2-secret\n"
    message = error_of("", base=base)
    assert message.startswith("casbackup.yaml:4: stores.main.password: a literal password")
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("{env: A, file: b}", "give exactly one of"),
        ("{}", "give exactly one of"),
        ("{secret: x}", "stores.main.password.secret: unknown key"),
        ('{command: "\'unclosed"}', "stores.main.password.command: cannot parse the command"),
        ("[a]", "stores.main.password: expected a mapping"),
    ],
)
def test_password_reference_errors(password: str, expected: str) -> None:
    message = error_of("", base=f"stores:\n  main:\n    url: /srv\n    password: {password}\n")
    assert message.startswith("casbackup.yaml:4: ")
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "casbackup.yaml:1: the configuration is empty"),
        ("stores: [\n", "casbackup.yaml:2: invalid YAML"),
        ("- a\n- b\n", "casbackup.yaml:1: <top>: expected a mapping"),
        ("jobs: {}\n", "casbackup.yaml:1: <top>: missing required key 'stores'"),
        ("stores: {}\n", "casbackup.yaml:1: stores: define at least one store"),
        ("a: 1\n---\nb: 2\n", "casbackup.yaml:2: invalid YAML: expected a single document"),
    ],
)
def test_document_level_errors(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_config(text)
    assert str(info.value).startswith(expected)


def test_load_config_names_the_file_and_resolves_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "casbackup.yaml"
    path.write_text("stores:\n  main: {url: repo}\n")
    assert load_config(path).stores["main"].url == str(tmp_path / "repo")
    path.write_text("stores:\n  main: {url: repo, pasword: {env: X}}\n")
    with pytest.raises(UsageError, match=rf"^{path}:2: stores\.main\.pasword: unknown key"):
        load_config(path)
    with pytest.raises(UsageError, match=r"missing\.yaml: cannot read configuration"):
        load_config(tmp_path / "missing.yaml")


# --- find_config_path ------------------------------------------------------------------


def test_find_config_path_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CASBACKUP_CONFIG", "/from/env.yaml")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/xdg")
    assert find_config_path("/explicit.yaml") == Path("/explicit.yaml")
    assert find_config_path(None) == Path("/from/env.yaml")
    monkeypatch.delenv("CASBACKUP_CONFIG")
    assert find_config_path(None) == Path("/xdg/casbackup/casbackup.yaml")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")  # XDG: relative is invalid
    assert find_config_path(None) == tmp_path / "home/.config/casbackup/casbackup.yaml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert find_config_path(None) == tmp_path / "home/.config/casbackup/casbackup.yaml"
    assert find_config_path("~/cb.yaml") == tmp_path / "home/cb.yaml"


# --- resolve_password ------------------------------------------------------------------

SECRET = "s3cret pass"


def test_resolve_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_TEST_PW", SECRET)
    assert resolve_password(PasswordRef("env", "CB_TEST_PW")) == SECRET
    assert resolve_password(None) is None
    monkeypatch.delenv("CB_TEST_PW")
    with pytest.raises(
        UsageError, match="^password env:CB_TEST_PW: environment variable is not set$"
    ):
        resolve_password(PasswordRef("env", "CB_TEST_PW"))
    monkeypatch.setenv("CB_TEST_PW", "")
    with pytest.raises(UsageError, match="password env:CB_TEST_PW: the password is empty"):
        resolve_password(PasswordRef("env", "CB_TEST_PW"))


def test_resolve_password_from_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(SECRET + " \n")
    assert resolve_password(PasswordRef("file", str(path))) == SECRET + " "  # one newline off
    path.write_bytes(SECRET.encode() + b"\r\n")
    assert resolve_password(PasswordRef("file", str(path))) == SECRET
    path.write_bytes(b"\xff" + SECRET.encode())
    with pytest.raises(UsageError) as info:
        resolve_password(PasswordRef("file", str(path)))
    assert str(info.value) == f"password file:{path}: not valid UTF-8"
    assert info.value.__cause__ is None and info.value.__context__ is not None
    with pytest.raises(UsageError, match=f"password file:{tmp_path}/nope: No such file"):
        resolve_password(PasswordRef("file", str(tmp_path / "nope")))


def test_resolve_password_from_command(tmp_path: Path) -> None:
    script = tmp_path / "pw.py"
    script.write_text(f"import sys\nprint({SECRET!r})\nsys.exit(int(sys.argv[1]))\n")
    command = f"{sys.executable} {script}"
    assert resolve_password(PasswordRef("command", f"{command} 0")) == SECRET
    with pytest.raises(UsageError) as info:
        resolve_password(PasswordRef("command", f"{command} 3"))
    assert str(info.value) == f"password command:{sys.executable}: command exited with status 3"
    assert SECRET not in str(info.value)
    with pytest.raises(UsageError, match="password command:/no/such/prog: No such file"):
        resolve_password(PasswordRef("command", "/no/such/prog --arg"))


def test_resolve_password_command_timeout_does_not_leak(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(f"import sys, time\nprint({SECRET!r}, flush=True)\ntime.sleep(30)\n")
    with pytest.raises(UsageError) as info:
        resolve_password(PasswordRef("command", f"{sys.executable} {script}"), timeout=0.5)
    assert "timed out after 0.5s" in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_password_ref_str_hides_command_arguments() -> None:
    assert str(PasswordRef("command", "echo topsecret")) == "command:echo"
    assert str(PasswordRef("env", "PW")) == "env:PW"
