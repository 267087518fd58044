"""The ``--strip-components N`` option, one definition for restore, ls, dump and find
(what it does: ``ops.strip``)."""

from __future__ import annotations

from typing import Annotated

import typer

StripOpt = Annotated[int, typer.Option(
    "--strip-components", metavar="N", min=0,
    help="Drop N leading path components (borg's); shallower entries are left out.")]
