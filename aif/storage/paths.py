"""Where a controller keeps its state, found the same way by the daemon and its clients,
and the places inside it that more than one layer reads.

The Store writes its install cache (``aif.store.install``); the analog validator reads
where installed packages' code lies, to trust only that in a secure run. The layout is
stated here, below both, so neither reaches into the other.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    """``$AIF_STATE_DIR``, else ``$XDG_DATA_HOME/aif``, else ``~/.local/share/aif``."""
    if env := os.environ.get("AIF_STATE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aif"


#: The file that marks a complete install in ``packages/NAME/VERSION/``.
INSTALLED_MARKER = "installed.json"


def packages_dir(state_dir: Path) -> Path:
    """The Store's install cache: ``STATE_DIR/packages/NAME/VERSION/``."""
    return state_dir / "packages"


def installed_sites(state_dir: Path) -> list[Path]:
    """The ``site/`` folder (the importable code) of every complete install, by name."""
    root = packages_dir(state_dir)
    return [marker.parent / "site" for marker in sorted(root.glob(f"*/*/{INSTALLED_MARKER}"))]
