"""Coverage-guided fuzzing of the tree and snapshot decoders with atheris (not run by CI).

    pip install atheris
    PYTHONPATH=. python tests/fuzz/fuzz_tree.py -max_total_time=300 [corpus_dir]

Every input must decode to validated nodes or raise IntegrityError naming the tree; any
other exception, or a node the validator accepted that does not re-encode and re-decode
to itself, is a crash that atheris reports with the input that caused it. The hypothesis
tests in tests/unit/model/test_validate.py check the same property on every CI run.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from casbackup import serde
    from casbackup.errors import IntegrityError
    from casbackup.model.snapshot import Snapshot
    from casbackup.model.tree import Tree, scan_tree

TID = bytes(32)


def one_input(data: bytes) -> None:
    try:
        tree = Tree.decode(data, TID)
    except IntegrityError as e:
        assert "\n" not in str(e)
    else:
        again = Tree.decode(Tree(list(tree.nodes)).encode(), TID)
        assert again.nodes == tree.nodes
        good, bad = scan_tree(data, TID)
        assert not bad and len(good) == len(tree.nodes)
    with contextlib.suppress(IntegrityError):
        Snapshot.decode(data, "ab" * 32)
    with contextlib.suppress(IntegrityError):
        serde.unpack(data)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
