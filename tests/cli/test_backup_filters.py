"""backup's restic-style filters and options through the real CLI against a real store
(issue #15 point 3): absolute and case-insensitive excludes, marker files, a size limit,
path lists, --time, comma-separated tags, restic's short flags, -v/-q, and the warning for
a pattern that matched nothing."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbackup.cli.progress import CliObserver
from casbackup.source.exclude import parse_size
from tests.helpers import json_lines, run_cli


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    s, src = tmp_path / "store", tmp_path / "src"
    for d in ("work/cache", "Work2", "tagged/deep", "big"):
        (src / d).mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "work" / "cache" / "x").write_text("x")
    (src / "work" / "keep").write_text("k")
    (src / "Work2" / "NOTES.TMP").write_text("n")
    (src / "tagged" / ".nobackup").write_text("")
    (src / "tagged" / "deep" / "f").write_text("f")
    (src / "big" / "large.bin").write_bytes(os.urandom(20_000))
    (src / "big" / "small.bin").write_bytes(os.urandom(2_000))
    assert run_cli("init", "--store", str(s)).returncode == 0
    return s, src


def _files(s: Path, src: Path) -> set[str]:
    r = run_cli("ls", "--store", str(s), "latest", str(src), "--recursive", "--json")
    assert r.returncode == 0, r.stderr
    return {x["path"][len(str(src)) + 1:] for x in json_lines(r.stdout, "node")}


def _snap(s: Path) -> dict[str, object]:
    r = run_cli("snapshots", "--store", str(s), "--json", "--latest", "1")
    assert r.returncode == 0, r.stderr
    return json_lines(r.stdout, "snapshot")[-1]


def test_absolute_case_insensitive_marker_and_size_filters(tree: tuple[Path, Path]) -> None:
    s, src = tree
    r = run_cli("backup", "--store", str(s), str(src), "-e", str(src / "work" / "cache"),
                "--iexclude", "*.tmp", "--exclude-if-present", ".nobackup",
                "--exclude-larger-than", "10k", "--exclude", "no-such-name")
    assert r.returncode == 0, r.stderr
    assert _files(s, src) == {"a.txt", "work", "work/keep", "Work2", "tagged", "big",
                              "big/small.bin"}
    assert r.stderr.decode().splitlines() == [
        "casbackup: warning: exclude pattern no-such-name matched nothing"]


def test_exclude_is_case_sensitive_and_if_present_checks_the_header(
        tree: tuple[Path, Path]) -> None:
    s, src = tree
    (src / "tagged" / ".nobackup").write_text("wrong header")
    r = run_cli("backup", "--store", str(s), str(src), "--exclude", "*.tmp",
                "--exclude-if-present", ".nobackup:SKIP")
    assert r.returncode == 0, r.stderr
    files = _files(s, src)
    assert "Work2/NOTES.TMP" in files and "tagged/deep/f" in files
    assert "exclude pattern *.tmp matched nothing" in r.stderr.decode()


def test_files_from_lists_comments_and_raw(tree: tuple[Path, Path], tmp_path: Path) -> None:
    s, src = tree
    lst = tmp_path / "list"
    lst.write_text(f"# a comment\n\n  {src / 'a.txt'}  \n{src / 'work'}\n")
    raw = tmp_path / "raw"
    raw.write_bytes(f"{src / 'big' / 'small.bin'}\0".encode())
    r = run_cli("backup", "--store", str(s), "--files-from", str(lst), "--files-from-raw",
                str(raw))
    assert r.returncode == 0, r.stderr
    assert sorted(_snap(s)["paths"]) == sorted(  # type: ignore[arg-type]
        [str(src / "a.txt"), str(src / "work"), str(src / "big" / "small.bin")])
    r = run_cli("backup", "--store", str(s), "--files-from", str(tmp_path / "missing"))
    assert r.returncode == 2 and b"cannot read file list" in r.stderr


def test_time_tags_host_and_one_file_system_flags(tree: tuple[Path, Path]) -> None:
    s, src = tree
    r = run_cli("backup", "--store", str(s), str(src), "--time", "2026-01-02 03:04:05",
                "--tag", "a,b", "--tag", "c", "-H", "box", "-x")
    assert r.returncode == 0, r.stderr
    snap = _snap(s)
    assert snap["tags"] == ["a", "b", "c"] and snap["hostname"] == "box"
    assert datetime.fromisoformat(str(snap["time"])).timestamp() == datetime(
        2026, 1, 2, 3, 4, 5).timestamp()
    r = run_cli("backup", "--store", str(s), str(src), "--time", "yesterday")
    assert r.returncode == 2 and b"--time 'yesterday'" in r.stderr


def test_verbose_lists_new_and_changed_files_and_quiet_prints_no_status(
        tree: tuple[Path, Path]) -> None:
    s, src = tree
    r = run_cli("backup", "--store", str(s), str(src), "-v")
    assert r.returncode == 0, r.stderr
    listed = [ln.split(None, 1) for ln in r.stdout.decode().splitlines()
              if ln.startswith(("new ", "changed "))]
    assert {p for _, p in listed} == {str(src / f) for f in (
        "a.txt", "work/cache/x", "work/keep", "Work2/NOTES.TMP", "tagged/.nobackup",
        "tagged/deep/f", "big/large.bin", "big/small.bin")}
    (src / "a.txt").write_text("changed")
    r = run_cli("backup", "--store", str(s), str(src), "-vv", "--json")
    acts = {x["item"]: x["action"] for x in json_lines(r.stdout, "verbose_status")}
    assert acts[str(src / "a.txt")] == "changed" and acts[str(src / "work/keep")] == "unchanged"
    r = run_cli("backup", "--store", str(s), str(src), "-q", "--json")
    assert r.returncode == 0 and r.stderr == b""
    assert [x["message_type"] for x in json_lines(r.stdout)] == ["summary"]
    r = run_cli("backup", "--store", str(s), str(src), "-q")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_quiet_draws_no_bar_even_on_a_terminal() -> None:
    obs = CliObserver(tty=True, quiet=True)
    obs.start("backup", 10, 1)
    assert obs._progress is None
    obs.finish()
    loud = CliObserver(tty=True, quiet=False)
    loud.start("backup", 10, 1)
    assert loud._progress is not None
    loud.finish()


@pytest.mark.parametrize("json_lines", [False, True])
@pytest.mark.parametrize("quiet", [False, True])
@pytest.mark.parametrize("verbose", [0, 1, 2])
@pytest.mark.parametrize("action", ["new", "changed", "unchanged"])
def test_an_observer_that_does_not_listen_would_show_nothing(
        json_lines: bool, quiet: bool, verbose: int, action: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The walker skips ``file`` when ``listens`` says no: then ``file`` must show nothing,
    neither a listing line nor a ``current_files`` entry of a status line."""
    obs = CliObserver(json_lines=json_lines, tty=False, verbose=verbose, quiet=quiet)
    obs.start("backup")
    capsys.readouterr()
    obs.file(b"/src/a.txt", action)
    obs.finish()  # (a --json run's last status line)
    out = capsys.readouterr()
    shown = out.out + out.err
    if not obs.listens(action):
        assert "a.txt" not in shown
    else:  # and one that listens is told something it shows
        assert "a.txt" in shown


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 10**6), unit=st.sampled_from(["", "k", "K", "m", "M", "g", "G", "t"]),
       suffix=st.sampled_from(["", "b", "B", "iB"]))
def test_sizes_parse_in_units_of_1024(n: int, unit: str, suffix: str) -> None:
    if not unit and suffix == "iB":
        return
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit.lower()]
    assert parse_size(f"{n}{unit}{suffix}") == n * mult
