"""``python -m casbackup``."""

from .entry import install, main

install()
main()
