"""Where a controller keeps its state, found the same way by the daemon and its clients."""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    """``$AIF_STATE_DIR``, else ``$XDG_DATA_HOME/aif``, else ``~/.local/share/aif``."""
    if env := os.environ.get("AIF_STATE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aif"
