"""Public names that a package exports without importing them until first use.

A package ``__init__`` runs whenever any of its modules is imported: an AIM's child
process that imports ``aif.host`` runs ``aif/__init__.py`` too. So a public API module
imports at once only what every process needs, and names the rest here; PEP 562's
module ``__getattr__`` imports each on first access and keeps it::

    __getattr__, __dir__ = lazy_exports(__name__, {"Controller": "aif.controller.controller"})

Type checkers see the same names through ``if TYPE_CHECKING:`` imports beside it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    module: str, lazy: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``module``: ``lazy`` maps a name to the module that
    defines it; ``__dir__`` lists the module's ``__all__``."""

    def __getattr__(name: str) -> Any:
        source = lazy.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[module], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(getattr(sys.modules[module], "__all__", ()))

    return __getattr__, __dir__
