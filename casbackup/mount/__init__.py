"""``casbackup mount``: the store's snapshots as a read-only FUSE filesystem.

- ``layout.py``: which names above the snapshots show which snapshot (pure).
- ``content.py``: range reads of file contents, blob by blob, through a bounded cache.
- ``fs.py``: the filesystem's answers to path requests, independent of the binding.
- ``fuse.py``: the FUSE binding (mfusepy over libfuse 3): the only importer of it.
- ``serve.py``: a mount's life: the reader lock held for as long as it is mounted.

One-way: ``serve`` -> ``fuse`` -> ``fs`` -> (``layout``, ``content``) -> ``store``. Nothing
here prints; the CLI (``cli/cmd_mount.py``) gets warnings through a callback.
"""
