"""Backends: dumb key -> bytes storage (local directory, memory, S3, SFTP) plus wrappers.

Only ``casbackup.store`` imports this package. ``open_backend(url)`` maps a store URL to a
backend: a plain path (local, the default), ``memory://name``, ``s3://bucket/prefix``,
``sftp://user@host[:port]/path``. Optional backends are imported lazily.
"""
