"""``python -m casbackup``."""

from .cli.app import main

main()
