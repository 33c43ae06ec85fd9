"""``python -m hadamnp``: the ``hadamnp`` command."""

from hadamnp.cli import main

main()
