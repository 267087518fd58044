"""The long-running daemon: ``casbackup.yaml`` (``config``), cron timing (``schedule``),
metrics and the runner loop.

Invariants: configuration is validated completely before anything runs, and every
configuration error names the file, line and key; timing decisions take a ``Clock`` so
they are tested with a fake one; the daemon reaches stores only through ``store.open``.
"""
