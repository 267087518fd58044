"""Deterministic benchmark corpus for casbackup / restic / borg comparisons.

A corpus lives in a root directory::

    ROOT/manifest.json   parameters and state (seed, scale, mutation generation, totals)
    ROOT/data/           the tree that the tools back up
        small/...        ~20k small files in nested dirs, log-normal sizes 100 B..64 KiB,
                         mostly source-like text, some random bytes, a few duplicates
        big/text-*.log   2 large compressible log-like files
        big/random-*.bin large incompressible (random) data
        sparse/zeros.bin long runs of written zeros between data segments
        sparse/holes.img the same shape with real holes (seek past EOF)

At ``--scale 1`` the tree is ~1 GB (20k small files, 2 x 150 MB text, 300 MB random,
2 x 100 MB zero-heavy); every count and size scales linearly. Everything is derived from
``random.Random(seed)``, so the same seed and scale give byte-identical trees; ``mutate``
applies a deterministic change set (edits in place, inserts in the middle, appends,
adds and deletes of a few % of the files, plus small changes inside the large files).

Usage::

    python benchmarks/corpus.py build ROOT [--scale 1.0] [--seed 42]
    python benchmarks/corpus.py mutate ROOT
    python benchmarks/corpus.py fingerprint ROOT/data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
KIB = 1024
MIB = 1024 * 1024

# Sizes at scale 1.0.
SMALL_FILES = 20_000
SMALL_MEDIAN = 4 * KIB
SMALL_SIGMA = 1.3
SMALL_MIN = 100
SMALL_MAX = 64 * KIB
SMALL_RANDOM_FRACTION = 0.15
SMALL_DUPLICATE_FRACTION = 0.02
TEXT_FILES = 2
TEXT_FILE_SIZE = 150 * MIB
RANDOM_FILES = 1
RANDOM_FILE_SIZE = 300 * MIB
SPARSE_FILE_SIZE = 100 * MIB
FILES_PER_DIR = 40

_SUFFIXES = [".py", ".c", ".h", ".txt", ".md", ".json", ".cfg", ".html", ".rs", ".go"]
_RANDOM_SUFFIXES = [".bin", ".dat", ".gz", ".jpg", ".pyc"]


# ----------------------------------------------------------------------------- content


class Text:
    """Fast generators of compressible text built from a seeded vocabulary."""

    def __init__(self, rng: random.Random) -> None:
        letters = "abcdefghijklmnopqrstuvwxyz_"
        words = {"".join(rng.choices(letters, k=rng.randint(2, 11))) for _ in range(3000)}
        self.words = sorted(words)
        punct = [
            "\n",
            "\n    ",
            "\n        ",
            "(",
            ")",
            " = ",
            ", ",
            ": ",
            ".",
            "{",
            "}",
            "# ",
            "return",
            "if",
            "for",
            "in",
            "def",
            "self",
            "0",
            "1",
            "None",
        ]
        self.tokens = self.words + punct
        # Zipf-like weights: a few very common tokens, a long tail.
        self.cum_weights = list(_accumulate(1.0 / (i + 1) ** 0.9 for i in range(len(self.tokens))))
        rng.shuffle(self.tokens)
        levels = ["INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR"]
        services = [rng.choice(self.words) for _ in range(24)]
        self.log_templates = []
        for _ in range(4096):
            msg = " ".join(rng.choices(self.words, k=rng.randint(3, 12)))
            self.log_templates.append(
                f"{rng.choice(levels)} [{rng.choice(services)}] {msg} "
                f"status={rng.choice(['ok', 'ok', 'ok', 'retry', 'fail'])}"
            )
        # A pool that small text files are cut from (like a source tree: similar files).
        self.pool = self.prose(rng, 8 * MIB)

    def prose(self, rng: random.Random, size: int) -> bytes:
        """About ``size`` bytes of source-code-like text."""
        n = size // 5 + 16
        out = " ".join(rng.choices(self.tokens, cum_weights=self.cum_weights, k=n)).encode()
        while len(out) < size:
            out += out[: size - len(out)]
        return out[:size]

    def log(self, rng: random.Random, size: int, start_line: int = 0) -> bytes:
        """About ``size`` bytes of log lines: counter, random request id, template."""
        n = size // 90 + 16
        templates = rng.choices(self.log_templates, k=n)
        hexs = rng.randbytes(4 * n).hex()
        ids = [hexs[i : i + 8] for i in range(0, 8 * n, 8)]
        stamps = map(
            str,
            range(
                1_700_000_000_000 + start_line * 37, 1_700_000_000_000 + (start_line + n) * 37, 37
            ),
        )
        text = "\n".join(map("{} req={} {}".format, stamps, ids, templates)) + "\n"
        return text.encode()

    def snippet(self, rng: random.Random, size: int) -> bytes:
        off = rng.randrange(0, len(self.pool) - size)
        return self.pool[off : off + size]


def _accumulate(values: Iterator[float]) -> Iterator[float]:
    total = 0.0
    for v in values:
        total += v
        yield total


def _write_log_file(path: Path, rng: random.Random, text: Text, size: int) -> None:
    written = 0
    line = 0
    with open(path, "wb") as f:
        while written < size:
            block = text.log(rng, min(4 * MIB, size - written), start_line=line)
            block = block[: size - written]
            f.write(block)
            written += len(block)
            line += block.count(b"\n")


def _write_random_file(path: Path, rng: random.Random, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(8 * MIB, left)
            f.write(rng.randbytes(n))
            left -= n


def _write_zero_heavy(path: Path, rng: random.Random, text: Text, size: int, holes: bool) -> None:
    """Alternate long zero runs (written, or holes) with random or text data segments."""
    pos = 0
    with open(path, "wb") as f:
        while pos < size:
            zeros = min(rng.randint(256 * KIB, 8 * MIB), size - pos)
            if holes:
                f.seek(zeros, os.SEEK_CUR)
            else:
                left = zeros
                while left > 0:
                    n = min(4 * MIB, left)
                    f.write(bytes(n))
                    left -= n
            pos += zeros
            if pos >= size:
                break
            seg = min(rng.randint(64 * KIB, 2 * MIB), size - pos)
            data = rng.randbytes(seg) if rng.random() < 0.5 else text.prose(rng, seg)
            f.write(data)
            pos += seg
        f.truncate(size)


# ----------------------------------------------------------------------------- build


def _small_size(rng: random.Random) -> int:
    v = rng.lognormvariate(math.log(SMALL_MEDIAN), SMALL_SIGMA)
    return int(min(SMALL_MAX, max(SMALL_MIN, v)))


def _small_dirs(rng: random.Random, nfiles: int) -> list[str]:
    """Nested directory names, a 3-level tree with ~FILES_PER_DIR files per leaf."""
    leaves = max(1, nfiles // FILES_PER_DIR)
    top = max(1, round(leaves ** (1 / 3)))
    dirs: list[str] = []
    i = 0
    while len(dirs) < leaves:
        a = f"pkg{i % top:02d}"
        b = f"mod{(i // top) % top:02d}"
        depth = rng.choice([1, 2, 2, 3, 3, 3])
        parts = [a, b, f"sub{i:04d}"][:depth]
        if depth < 3:
            parts.append(f"leaf{i:04d}")
        dirs.append("/".join(parts))
        i += 1
    return dirs


def build(root: Path, scale: float = 1.0, seed: int = 42) -> dict[str, Any]:
    """(Re)create ``root`` with a corpus for ``scale`` and ``seed``; return the manifest."""
    t0 = time.perf_counter()
    root = Path(root)
    data = root / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    rng = random.Random(f"casbackup-bench-{seed}")
    text = Text(rng)

    nsmall = max(10, int(SMALL_FILES * scale))
    dirs = _small_dirs(rng, nsmall)
    written: list[tuple[Path, bytes]] = []
    for i in range(nsmall):
        d = data / "small" / dirs[i % len(dirs)]
        d.mkdir(parents=True, exist_ok=True)
        r = rng.random()
        if written and r < SMALL_DUPLICATE_FRACTION:
            src_path, content = written[rng.randrange(len(written))]
            name = f"copy{i:05d}_{src_path.name}"
        elif r < SMALL_DUPLICATE_FRACTION + SMALL_RANDOM_FRACTION:
            content = rng.randbytes(_small_size(rng))
            name = f"f{i:05d}{rng.choice(_RANDOM_SUFFIXES)}"
        else:
            content = text.snippet(rng, _small_size(rng))
            name = f"f{i:05d}{rng.choice(_SUFFIXES)}"
        path = d / name
        path.write_bytes(content)
        if len(written) < 2000:
            written.append((path, content))

    big = data / "big"
    big.mkdir()
    for i in range(TEXT_FILES):
        _write_log_file(big / f"text-{i}.log", rng, text, int(TEXT_FILE_SIZE * scale))
    for i in range(RANDOM_FILES):
        _write_random_file(big / f"random-{i}.bin", rng, int(RANDOM_FILE_SIZE * scale))
    sparse = data / "sparse"
    sparse.mkdir()
    _write_zero_heavy(sparse / "zeros.bin", rng, text, int(SPARSE_FILE_SIZE * scale), False)
    _write_zero_heavy(sparse / "holes.img", rng, text, int(SPARSE_FILE_SIZE * scale), True)

    files, nbytes = tree_stats(data)
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "scale": scale,
        "generation": 0,
        "files": files,
        "bytes": nbytes,
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    write_manifest(root, manifest)
    return manifest


# ----------------------------------------------------------------------------- mutate


def mutate(root: Path) -> dict[str, Any]:
    """Apply the next deterministic change set to ``root``'s corpus; return the manifest.

    About 3% of small files are overwritten in place (same size), 1% get an insert in
    the middle, 1% an append, 1% are deleted and 1% new files are added (some in a new
    directory). One text file gets 8 KiB inserted in the middle (shifts all later
    content), the other 2 MiB appended, the random file four 64 KiB in-place overwrites
    and the zero-heavy file 1 MiB of data written into the middle. The holes file is
    left alone.
    """
    t0 = time.perf_counter()
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None:
        raise SystemExit(f"no corpus manifest in {root}")
    gen = int(manifest["generation"]) + 1
    data = root / "data"
    rng = random.Random(f"casbackup-bench-{manifest['seed']}-mutate-{gen}")
    text = Text(random.Random(f"casbackup-bench-{manifest['seed']}-text"))

    small = sorted(p for p in _walk_files(data / "small"))
    n = len(small)
    k_edit, k_insert, k_append, k_delete, k_add = (
        max(1, round(n * f)) for f in (0.03, 0.01, 0.01, 0.01, 0.01)
    )
    chosen = rng.sample(range(n), min(n, k_edit + k_insert + k_append + k_delete))
    edit = chosen[:k_edit]
    insert = chosen[k_edit : k_edit + k_insert]
    append = chosen[k_edit + k_insert : k_edit + k_insert + k_append]
    delete = chosen[k_edit + k_insert + k_append :]

    for i in edit:
        p = small[i]
        size = p.stat().st_size
        ln = min(size, rng.randint(16, 1024))
        off = rng.randrange(0, size - ln + 1)
        with open(p, "r+b") as f:
            f.seek(off)
            f.write(rng.randbytes(ln))
    for i in insert:
        p = small[i]
        content = p.read_bytes()
        mid = len(content) // 2
        p.write_bytes(
            content[:mid] + text.snippet(rng, rng.randint(1 * KIB, 4 * KIB)) + content[mid:]
        )
    for i in append:
        with open(small[i], "ab") as f:
            f.write(text.snippet(rng, rng.randint(100, 4 * KIB)))
    for i in delete:
        small[i].unlink()
    new_dir = data / "small" / f"added-gen{gen}"
    new_dir.mkdir(parents=True, exist_ok=True)
    for j in range(k_add):
        d = new_dir if j % 2 else small[rng.randrange(n)].parent
        content = (
            rng.randbytes(_small_size(rng))
            if rng.random() < SMALL_RANDOM_FRACTION
            else text.snippet(rng, _small_size(rng))
        )
        (d / f"new-g{gen}-{j:05d}.txt").write_bytes(content)

    big = data / "big"
    texts = sorted(big.glob("text-*.log"))
    if texts:
        p = texts[0]
        with open(p, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            mid = size // 2
            f.seek(mid)
            tail = f.read()
            f.seek(mid)
            f.write(text.log(rng, 8 * KIB)[: 8 * KIB] + tail)
    if len(texts) > 1:
        with open(texts[1], "ab") as f:
            f.write(text.log(rng, 2 * MIB, start_line=10_000_000 * gen))
    for p in sorted(big.glob("random-*.bin")):
        with open(p, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            for _ in range(4):
                f.seek(rng.randrange(0, max(1, size - 64 * KIB)))
                f.write(rng.randbytes(min(size, 64 * KIB)))
    zeros = data / "sparse" / "zeros.bin"
    if zeros.exists():
        with open(zeros, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size // 2 - MIB // 2))
            f.write(rng.randbytes(min(size, MIB)))

    files, nbytes = tree_stats(data)
    manifest.update(
        generation=gen,
        files=files,
        bytes=nbytes,
        mutate_seconds=round(time.perf_counter() - t0, 2),
        last_mutation={
            "edited": len(edit),
            "inserted": len(insert),
            "appended": len(append),
            "deleted": len(delete),
            "added": k_add,
        },
    )
    write_manifest(root, manifest)
    return manifest


# ----------------------------------------------------------------------------- helpers


def _walk_files(top: Path) -> Iterator[Path]:
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            yield Path(dirpath) / name


def tree_stats(top: Path) -> tuple[int, int]:
    """(number of regular files, sum of apparent sizes) under ``top``."""
    files = 0
    nbytes = 0
    for p in _walk_files(top):
        st = p.lstat()
        files += 1
        nbytes += st.st_size
    return files, nbytes


def fingerprint(top: Path) -> str:
    """SHA-256 over the sorted (relative path, type, size, content hash) of a tree.

    Compares content and layout only (no modes, owners or times), so a restore by any
    tool can be checked against the source.
    """
    top = Path(top)
    entries = []
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = os.path.relpath(dirpath, top)
        for name in dirnames:
            entries.append(f"d {os.path.normpath(os.path.join(rel_dir, name))}")
        for name in filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(p):
                entries.append(f"l {rel} {os.readlink(p)}")
                continue
            with open(p, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            entries.append(f"f {rel} {os.path.getsize(p)} {digest}")
    entries.sort()
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(root) / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = Path(root) / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, Path(root) / "manifest.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="(re)create a corpus in ROOT/data")
    b.add_argument("root", type=Path)
    b.add_argument("--scale", type=float, default=1.0, help="1.0 is ~1 GB (default)")
    b.add_argument("--seed", type=int, default=42)
    m = sub.add_parser("mutate", help="apply the next deterministic change set")
    m.add_argument("root", type=Path)
    f = sub.add_parser("fingerprint", help="content hash of a tree")
    f.add_argument("tree", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        print(json.dumps(build(args.root, args.scale, args.seed), indent=2))
    elif args.cmd == "mutate":
        print(json.dumps(mutate(args.root), indent=2))
    else:
        print(fingerprint(args.tree))
    return 0


if __name__ == "__main__":
    sys.exit(main())
