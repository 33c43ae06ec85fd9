"""Benchmarks: hadamnp's kernels timed against the alternatives, in one process.

Run ``hadamnp bench`` or ``python -m hadamnp.bench`` (see :mod:`hadamnp.bench.runner`);
each module (:mod:`~hadamnp.bench.fwht`, :mod:`~hadamnp.bench.binary`,
:mod:`~hadamnp.bench.integer`, :mod:`~hadamnp.bench.training`) also runs on its own with
``python -m hadamnp.bench.NAME``. Timing rules: :mod:`hadamnp.bench.harness`. Speed is
measured here, never asserted in tests; results go to a file the user names or to a new
file in the temporary directory, never into the source tree.
"""
