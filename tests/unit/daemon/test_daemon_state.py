"""The daemon's state file (casbackup.daemon.state): atomic JSON round trip, location."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from casbackup.daemon.state import (
    JobState,
    State,
    default_state_path,
    exclusive,
    load_state,
    save_state,
    state_path,
)
from casbackup.errors import UsageError


def test_state_round_trip(tmp_path: Path) -> None:
    t = datetime(2024, 5, 1, 3, 0, 5, tzinfo=UTC)
    st = State(daemon_pid=42, daemon_started=t)
    st.jobs["nightly"] = JobState(last_run=t, last_result="success", last_success=t,
                                  last_duration=1.5, next_run=t, runs=3, failures=1)
    st.watches["docs->local"] = {"ready": True, "snapshots": 2}
    path = tmp_path / "sub" / "state.json"
    save_state(path, st)
    assert load_state(path) == st
    assert st.last_runs() == {"nightly": t}
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["jobs"]["nightly"]["last_run"] == t.isoformat()
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left


def test_state_missing_is_empty_damaged_is_a_usage_error(tmp_path: Path) -> None:
    assert load_state(tmp_path / "none.json") == State()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="bad.json: cannot read the daemon state"):
        load_state(bad)
    bad.write_text('{"version": 99}')
    with pytest.raises(UsageError, match="unknown version 99"):
        load_state(bad)
    bad.write_text('{"version": 1, "jobs": {"j": {"last_run": "yesterday"}}}')
    with pytest.raises(UsageError, match="damaged daemon state"):
        load_state(bad)


def test_state_unknown_fields_are_ignored(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text('{"version": 1, "jobs": {"j": {"runs": 2, "future": 1}}, "other": 3}')
    assert load_state(p).jobs["j"] == JobState(runs=2)


def test_state_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    a = default_state_path(tmp_path / "a.yaml")
    assert a.parent == tmp_path / "xdg" / "casbackup" and a.name.startswith("state-")
    assert default_state_path(tmp_path / "a.yaml") == a != default_state_path(tmp_path / "b.yaml")
    assert state_path(tmp_path / "a.yaml", "/var/lib/x.json") == Path("/var/lib/x.json")
    monkeypatch.setenv("XDG_STATE_HOME", "relative")  # ignored, as the spec says
    assert ".local/state/casbackup" in str(default_state_path(tmp_path / "a.yaml"))


def test_state_exclusive_refuses_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "d" / "state.json"
    with exclusive(path):
        assert (tmp_path / "d" / "state.json.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(UsageError, match=r"another daemon \(pid \d+\) already uses"), \
                exclusive(path):
            pass
    with exclusive(path):  # released
        pass
