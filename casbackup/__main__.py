"""``python -m casbackup``."""

from .entry import main

main()
