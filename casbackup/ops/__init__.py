"""Operations: backup, restore, verify, forget, gc, sync, watch.

Invariants: ops get a Store from ``casbackup.store`` and never import ``backends``; they
never print — they report through an ``Observer`` (observer.py) that ``cli`` renders and
``daemon`` turns into metrics.
"""
