"""Import heavy modules in the background while the rest of a workflow starts.

torch, aihwkit, scikit-learn and matplotlib take seconds to import. An AIM that will
need them starts a ``Preload`` in ``setup``; the imports then run while the other
AIMs start and the controller wires the channels, instead of after the first record
arrives, when they would sit on the workflow's critical path (measured on the main
job: the validator's imports alone held the simulator back by about 3 s). The AIM
awaits ``ready()`` before its first use; an import error surfaces there, where the
work that needs the module would have raised it anyway.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Sequence


class Preload:
    """Imports ``modules`` in a daemon thread, once, starting now."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = tuple(modules)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, name="aif-preload", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            for module in self.modules:
                importlib.import_module(module)
        except BaseException as exc:  # re-raised in ready(), in the AIM's own task
            self._error = exc

    async def ready(self) -> None:
        """Wait for the imports; raises what an import raised."""
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error
