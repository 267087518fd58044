"""A benchmark corpus of real files: a deterministic sample of what a Debian machine with
Python has on disk, copied with its metadata, plus a deterministic "day of changes".

Sources (those that exist): the running interpreter's ``site-packages`` (the venv) and
standard library, ``/usr/lib/python3*``, ``/usr/local/lib/python3*``, ``/usr/include``,
``/usr/share`` (docs, locales, man pages, data) and ``/usr/lib/x86_64-linux-gnu``
(shared libraries).
Each regular file or symlink is ranked by a keyed hash of its source path (the seed is
the key), so the sample is the same on every run and spread over every directory. Files
below ``SMALL_LIMIT`` are taken in rank order until ``--files`` of them are in; larger
files (libraries, archives, data) then fill the byte budget ``--bytes`` in rank order.
Taken files are copied under ``ROOT/data/<source label>/<relative path>`` with
``shutil.copy2`` (mode, times, xattrs), symlinks as symlinks, directories get their
source's mode and mtime. A synthetic application log (``log/app.log``) is added so the
day of changes can append to it. Whatever is taken is printed and recorded in
``ROOT/manifest.json`` (per source: files, bytes), so a smaller machine gives a smaller,
still deterministic corpus.

``mutate`` (the day of changes, deterministic from the seed and the generation): edits a
few hundred files in place (a few bytes to a few KiB), appends to some, adds new files
(copies of sampled text with a header, half in a new directory), removes some, renames
some within their directory, and appends 1 MiB of lines to the log.

Usage::

    python benchmarks/realtree.py build ROOT [--files 50000] [--bytes 1500000000] [--seed 42]
    python benchmarks/realtree.py mutate ROOT
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import shutil
import stat
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

FORMAT = "real-1"
KIB = 1024
MIB = 1024 * 1024
SMALL_LIMIT = 256 * KIB
MAX_FILE = 64 * MIB
DEFAULT_FILES = 50_000
DEFAULT_BYTES = 1_500_000_000
LOG_SIZE = 16 * MIB


def sources() -> list[tuple[str, Path]]:
    """(label, directory) of every source that exists on this machine, no two nested."""
    paths = sysconfig.get_paths()
    cand: list[tuple[str, str]] = [("site-packages", paths["purelib"]),
                                   ("python-stdlib", paths["stdlib"])]
    cand += [(f"usr-lib-{Path(p).name}", p) for p in sorted(glob.glob("/usr/lib/python3*"))]
    cand += [(f"usr-local-lib-{Path(p).name}", p)
             for p in sorted(glob.glob("/usr/local/lib/python3*"))]
    cand += [("usr-include", "/usr/include"), ("usr-share", "/usr/share"),
             ("usr-lib-x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")]
    out: list[tuple[str, Path]] = []
    for label, p in cand:
        path = Path(p).resolve()
        if not path.is_dir():
            continue
        if any(path == q or q in path.parents or path in q.parents for _, q in out):
            continue
        out.append((label, path))
    return out


def _rank(seed: int, path: str) -> bytes:
    return hashlib.blake2b(path.encode(errors="surrogateescape"), digest_size=8,
                           key=str(seed).encode()).digest()


def _candidates(top: Path) -> list[tuple[str, int, bool]]:
    """(relative path, size, is symlink) of the regular files and symlinks under top."""
    out: list[tuple[str, int, bool]] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            is_link = stat.S_ISLNK(st.st_mode)
            if not (is_link or stat.S_ISREG(st.st_mode)) or st.st_size > MAX_FILE:
                continue
            if not is_link and not os.access(p, os.R_OK):
                continue
            out.append((os.path.relpath(p, top), 0 if is_link else st.st_size, is_link))
    return out


def select(srcs: list[tuple[str, Path]], nfiles: int, nbytes: int,
           seed: int) -> list[tuple[str, Path, str, int, bool]]:
    """The sample: (label, source dir, relative path, size, is symlink)."""
    pool = []
    for label, top in srcs:
        for rel, size, link in _candidates(top):
            pool.append((_rank(seed, f"{label}/{rel}"), label, top, rel, size, link))
    pool.sort()
    small = [p for p in pool if p[4] < SMALL_LIMIT][:nfiles]
    taken = sum(p[4] for p in small)
    chosen = list(small)
    for p in pool:
        if p[4] >= SMALL_LIMIT and taken + p[4] <= nbytes:
            chosen.append(p)
            taken += p[4]
    return sorted((label, top, rel, size, link) for _, label, top, rel, size, link in chosen)


def _copy_dirs_meta(data: Path, dirs: dict[Path, Path]) -> None:
    for dst in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        src = dirs[dst]
        try:
            st = os.stat(src)
        except OSError:
            continue
        os.chmod(dst, stat.S_IMODE(st.st_mode) | stat.S_IWUSR | stat.S_IXUSR)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def build(root: Path, nfiles: int = DEFAULT_FILES, nbytes: int = DEFAULT_BYTES,
          seed: int = 42) -> dict[str, Any]:
    """(Re)create ``root/data`` from a sample of this machine's files; return the manifest."""
    t0 = time.perf_counter()
    root = Path(root)
    data = root / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    srcs = sources()
    chosen = select(srcs, nfiles, nbytes - LOG_SIZE, seed)
    per_source: dict[str, dict[str, Any]] = {
        label: {"path": str(top), "files": 0, "bytes": 0} for label, top in srcs}
    dirs: dict[Path, Path] = {}
    for label, top, rel, _size, link in chosen:
        src, dst = top / rel, data / label / rel
        parent = dst.parent
        if parent not in dirs:
            parent.mkdir(parents=True, exist_ok=True)
            d, s = parent, src.parent
            while d != data and d not in dirs:
                dirs[d] = s
                d, s = d.parent, s.parent
        try:
            if link:
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst)
        except OSError:
            continue
        per_source[label]["files"] += 1
        per_source[label]["bytes"] += dst.lstat().st_size
    _copy_dirs_meta(data, dirs)
    (data / "log").mkdir()
    rng = random.Random(f"casbackup-real-{seed}-log")
    text = corpus.Text(rng)
    with open(data / "log" / "app.log", "wb") as f:
        f.write(text.log(rng, LOG_SIZE))
    files, total = corpus.tree_stats(data)
    manifest: dict[str, Any] = {
        "format": FORMAT, "seed": seed, "target_files": nfiles, "target_bytes": nbytes,
        "generation": 0, "files": files, "bytes": total, "sources": per_source,
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    corpus.write_manifest(root, manifest)
    return manifest


def _regular_files(data: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(data):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink() and p.parent != data / "log":
                out.append(p)
    return out


def mutate(root: Path) -> dict[str, Any]:
    """Apply the next deterministic day of changes to ``root``'s corpus."""
    t0 = time.perf_counter()
    root = Path(root)
    manifest = corpus.read_manifest(root)
    if manifest is None or manifest.get("format") != FORMAT:
        raise SystemExit(f"no real-tree corpus manifest in {root}")
    gen = int(manifest["generation"]) + 1
    data = root / "data"
    rng = random.Random(f"casbackup-real-{manifest['seed']}-mutate-{gen}")
    text = corpus.Text(random.Random(f"casbackup-real-{manifest['seed']}-text"))
    files = _regular_files(data)
    k_edit, k_append, k_add, k_remove, k_rename = 300, 60, 150, 100, 50
    picks = rng.sample(range(len(files)), min(len(files), k_edit + k_append + k_remove
                                              + k_rename))
    edit = picks[:k_edit]
    append = picks[k_edit:k_edit + k_append]
    remove = picks[k_edit + k_append:k_edit + k_append + k_remove]
    rename = picks[k_edit + k_append + k_remove:]
    for i in edit:
        p = files[i]
        size = p.stat().st_size
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
        ln = min(size, rng.randint(8, 4 * KIB))
        with open(p, "r+b") as f:
            f.seek(rng.randrange(0, size - ln + 1))
            f.write(text.snippet(rng, ln)[:ln] if ln else b"")
    for i in append:
        files[i].chmod(files[i].stat().st_mode | stat.S_IWUSR)
        with open(files[i], "ab") as f:
            f.write(text.snippet(rng, rng.randint(100, 8 * KIB)))
    new_dir = data / f"added-gen{gen}"
    new_dir.mkdir(exist_ok=True)
    for j in range(k_add):
        d = new_dir if j % 2 else files[rng.randrange(len(files))].parent
        d.chmod(d.stat().st_mode | stat.S_IWUSR)
        (d / f"new-g{gen}-{j:04d}.txt").write_bytes(
            f"# added on day {gen}\n".encode() + text.snippet(rng, rng.randint(200, 32 * KIB)))
    for i in remove:
        files[i].parent.chmod(files[i].parent.stat().st_mode | stat.S_IWUSR)
        files[i].unlink()
    for i in rename:
        p = files[i]
        p.parent.chmod(p.parent.stat().st_mode | stat.S_IWUSR)
        p.rename(p.with_name(f"{p.name}.renamed-g{gen}"))
    with open(data / "log" / "app.log", "ab") as f:
        f.write(text.log(rng, MIB, start_line=10_000_000 * gen))
    nfiles, nbytes = corpus.tree_stats(data)
    manifest.update(
        generation=gen, files=nfiles, bytes=nbytes,
        mutate_seconds=round(time.perf_counter() - t0, 2),
        last_mutation={"edited": len(edit), "appended": len(append), "added": k_add,
                       "removed": len(remove), "renamed": len(rename), "log_appended": MIB},
    )
    corpus.write_manifest(root, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="(re)create a real-tree corpus in ROOT/data")
    b.add_argument("root", type=Path)
    b.add_argument("--files", type=int, default=DEFAULT_FILES)
    b.add_argument("--bytes", type=int, default=DEFAULT_BYTES)
    b.add_argument("--seed", type=int, default=42)
    m = sub.add_parser("mutate", help="apply the next day of changes")
    m.add_argument("root", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        print(json.dumps(build(args.root, args.files, args.bytes, args.seed), indent=2))
    else:
        print(json.dumps(mutate(args.root), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
