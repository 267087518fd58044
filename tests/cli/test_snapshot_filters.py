"""snapshots and forget selections as restic's (issue #15 points 3 and 4), through the
real CLI against a real store: comma tag groups, --host/-H, --path, --latest,
--group-by, --compact, full-width columns, and exit 4 for a filter that matched nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import json_lines, json_result, run_cli

LONG_HOST = "a-very-long-hostname.example.org"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("snapfilters")
    s, one, two = tmp / "store", tmp / "one", tmp / "two"
    for d in (one, two):
        d.mkdir()
        (d / "f").write_text(str(d))
    assert run_cli("init", "--store", str(s)).returncode == 0
    for args in (
        [str(one), "-H", "box", "--tag", "a,b", "--time", "2026-01-01 10:00:00"],
        [str(one), "-H", "box", "--tag", "a", "--time", "2026-01-02 10:00:00"],
        [str(two), "-H", "box", "--tag", "c", "--time", "2026-01-03 10:00:00"],
        [str(one), "-H", LONG_HOST, "--tag", "some-rather-long-tag,b",
         "--time", "2026-01-04 10:00:00"],
    ):
        r = run_cli("backup", "--store", str(s), *args)
        assert r.returncode == 0, r.stderr
    return s, one, two


def _ids(s: Path, *args: str) -> list[str]:
    r = run_cli("snapshots", "--store", str(s), "--json", *args)
    assert r.returncode == 0, r.stderr
    return [x["time"][:10] for x in json_lines(r.stdout, "snapshot")]


def test_tags_split_on_commas_and_repeats_mean_either(store: tuple[Path, Path, Path]) -> None:
    s, one, two = store
    assert _ids(s, "--tag", "a,b") == ["2026-01-01"]
    assert _ids(s, "--tag", "b") == ["2026-01-01", "2026-01-04"]
    assert _ids(s, "--tag", "a,b", "--tag", "c") == ["2026-01-01", "2026-01-03"]
    assert _ids(s, "-H", "box", "--path", str(one)) == ["2026-01-01", "2026-01-02"]
    assert _ids(s, "--path", str(two) + "/") == ["2026-01-03"]


def test_latest_and_group_by(store: tuple[Path, Path, Path]) -> None:
    s, one, two = store
    assert _ids(s, "--latest", "1") == ["2026-01-02", "2026-01-03", "2026-01-04"]
    r = run_cli("snapshots", "--store", str(s), "--json", "-g", "host", "--latest", "2")
    snaps = json_lines(r.stdout, "snapshot")
    assert [(x["group_key"]["hostname"], x["time"][:10]) for x in snaps] == [
        (LONG_HOST, "2026-01-04"), ("box", "2026-01-02"), ("box", "2026-01-03")]
    assert all(x["group_key"]["paths"] is None for x in snaps)
    r = run_cli("snapshots", "--store", str(s), "--group-by", "hosts")
    assert r.returncode == 2 and b"unknown field hosts" in r.stderr


def test_text_columns_are_never_cut(store: tuple[Path, Path, Path]) -> None:
    s, one, _ = store
    text = run_cli("snapshots", "--store", str(s)).stdout.decode()
    assert LONG_HOST in text and "b,some-rather-long-tag" in text and str(one) in text
    compact = run_cli("snapshots", "--store", str(s), "--compact").stdout.decode()
    head = compact.splitlines()[0].split()
    assert head == ["ID", "Time", "Host", "Tags"] and str(one) not in compact
    assert "b,some-rather-long-tag" in compact


def test_a_filter_that_matches_nothing_exits_4(store: tuple[Path, Path, Path]) -> None:
    s, _, _ = store
    r = run_cli("snapshots", "--store", str(s), "--host", "nohost")
    assert r.returncode == 4 and r.stderr.decode().strip() == (
        "casbackup: no snapshot matches --host nohost")
    r = run_cli("snapshots", "--store", str(s), "--json", "--host", "box", "--host", "typo")
    assert r.returncode == 0 and len(json_lines(r.stdout, "snapshot")) == 3
    assert "--host typo matched no snapshot" in r.stderr.decode()
    r = run_cli("forget", "--store", str(s), "--keep-last", "1", "--tag", "nope,a", "-n")
    assert r.returncode == 4 and b"--tag nope,a" in r.stderr


def test_forget_selects_with_tag_groups_paths_and_short_flags(
        store: tuple[Path, Path, Path]) -> None:
    s, one, _ = store
    r = run_cli("forget", "--store", str(s), "-l", "1", "--tag", "a", "--tag", "c", "-n",
                "--json", "-g", "")
    assert r.returncode == 0, r.stderr
    (group,) = json_lines(r.stdout, "forget_group")
    out = json_result(r.stdout)
    assert [x["time"][:10] for x in group["snapshots"]] == [
        "2026-01-03", "2026-01-02", "2026-01-01"]
    assert len(out["removed"]) == 2
    r = run_cli("forget", "--store", str(s), "-l", "1", "--path", str(one), "-n", "--json")
    kept = json_result(r.stdout)["kept"]
    assert len(kept) == 2  # one per host among the snapshots of ONE
