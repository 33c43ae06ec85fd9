"""Thin entry point kept for old commands: ``python bench/run_all.py ARGS`` runs
``python -m hadamnp.bench ARGS`` (the benchmarks live in the package, :mod:`hadamnp.bench`)."""

import sys

from hadamnp.bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
