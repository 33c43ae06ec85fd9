"""``python -m hadamnp.bench``: run every benchmark (see :mod:`hadamnp.bench.runner`)."""

import sys

from hadamnp.bench.runner import main

sys.exit(main())
