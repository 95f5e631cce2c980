"""Suite-wide settings.

One torch/OpenMP thread per process, set before anything imports torch and inherited
by the AIM processes the tests start: on a 2-core machine the test process and its
simulator children would otherwise oversubscribe the cores, and idle OpenMP workers
spin (measured on the analog unit tests: 56 s with default threads, 16 s with one).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def clean_imports(tmp_path: Path) -> Iterator[None]:
    """Forget the modules and ``sys.path`` entries a test loaded from its tmp_path.

    Store tests install and import AIM packages from temporary folders; without this a
    later test would find a stale module of the same name (``usefixtures`` it).
    """
    path_before = list(sys.path)
    yield
    sys.path[:] = path_before
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
