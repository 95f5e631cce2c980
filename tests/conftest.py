"""Suite-wide settings.

One torch/OpenMP thread per process, set before anything imports torch and inherited
by the AIM processes the tests start: on a 2-core machine the test process and its
simulator children would otherwise oversubscribe the cores, and idle OpenMP workers
spin (measured on the analog unit tests: 56 s with default threads, 16 s with one).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
