"""casbackup: a content-addressed, deduplicating backup store.

Layers (dependencies point down only; see docs/design.md §11)::

    cli/ daemon/          parse, schedule, render (only cli/ prints)
    ops/                  backup, restore, verify, forget, gc, sync, watch
    store/                the Store facade: the ONLY code that calls Backend methods
    backends/ model/ crypto/ chunking/ source/
    errors ids serde clock
"""

__version__ = "0.1.0"
