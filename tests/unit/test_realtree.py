"""The real-tree benchmark corpus (benchmarks/realtree.py) is a deterministic sample
within its budgets, and its day of changes is deterministic too."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import corpus  # noqa: E402
import realtree  # noqa: E402


def _fake_sources(top: Path) -> list[tuple[str, Path]]:
    rng = random.Random(7)
    out = []
    for label in ("a", "b"):
        root = top / label
        for i in range(120):
            d = root / f"d{i % 7}" / f"e{i % 3}"
            d.mkdir(parents=True, exist_ok=True)
            size = rng.choice([10, 900, 5000, 300_000])
            (d / f"f{i}.txt").write_bytes(rng.randbytes(size))
        (root / "d0" / "link").symlink_to("e0")
        out.append((label, root))
    return out


@pytest.mark.parametrize(("nfiles", "nbytes"), [(30, 2_000_000), (500, 1_000_000), (5, 10**9)])
def test_sample_is_deterministic_and_within_budget(tmp_path: Path, nfiles: int,
                                                   nbytes: int) -> None:
    srcs = _fake_sources(tmp_path / "src")
    a = realtree.select(srcs, nfiles, nbytes, seed=1)
    assert a == realtree.select(srcs, nfiles, nbytes, seed=1)
    assert a != realtree.select(srcs, nfiles, nbytes, seed=2)
    small = [x for x in a if x[3] < realtree.SMALL_LIMIT]
    big = [x for x in a if x[3] >= realtree.SMALL_LIMIT]
    assert len(small) <= nfiles
    assert sum(x[3] for x in a) <= max(nbytes, sum(x[3] for x in small))
    assert sum(x[3] for x in big) <= nbytes
    assert {x[0] for x in a} <= {"a", "b"}


def test_build_and_day_of_changes_are_deterministic(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    srcs = _fake_sources(tmp_path / "src")
    monkeypatch.setattr(realtree, "sources", lambda: srcs)
    monkeypatch.setattr(realtree, "LOG_SIZE", 64 << 10)
    monkeypatch.setattr(corpus, "MIB", 64 << 10)  # Text's 8 MiB pool -> 512 KiB: fast
    prints = []
    for run in ("r1", "r2"):
        m = realtree.build(tmp_path / run, 150, 3_000_000, seed=3)
        data = tmp_path / run / "data"
        first = corpus.fingerprint(data)
        assert m["files"] == corpus.tree_stats(data)[0]
        m2 = realtree.mutate(tmp_path / run)
        assert m2["generation"] == 1 and corpus.fingerprint(data) != first
        prints.append((first, corpus.fingerprint(data)))
    assert prints[0] == prints[1]
