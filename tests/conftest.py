"""Shared fixtures. Tests mirror the package layout (``tests/<subpackage>/test_*.py``);
``autograd_ref`` and ``spec_model`` are test-only helpers importable from every test
(``pythonpath = tests`` in ``setup.cfg``)."""

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A ``numpy.random.Generator`` seeded from the test's node id (stable across runs)."""
    import zlib

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
