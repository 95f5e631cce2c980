"""Per-layer RPU configurations: ``rpu: {layers: {PATTERN: RPU, ...}}``.

Each pattern is an ``fnmatch`` pattern on layer names: the index of a layer list's layer
(``"0"``, ``"3"``, ``"[02]"``), or a module name of a zoo or torch model as
``named_modules()`` gives it (``fc*``, ``features.0``). A layer takes the configuration
of the first pattern that matches it, in the order written; the others take the
section's own configuration. Every pattern must match an analog layer.

The simulator builds one RPU configuration and passes it to the model builder
(``build_rpu_config`` then ``build_model``), so the per-layer configurations travel
attached to that object (:func:`attach`); :func:`plain` gives it back without them
before aihwkit copies it into tiles, and :func:`chooser` picks each layer's.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

Problem = tuple[str, str]

_ATTRIBUTE = "_aif_layer_configs"


def attach(rpu: Any, configs: dict[str, Any]) -> None:
    """Gives the aihwkit config ``rpu`` the configurations of the layers ``configs`` match."""
    if configs:
        setattr(rpu, _ATTRIBUTE, dict(configs))


def layer_configs(rpu: Any) -> dict[str, Any]:
    """Pattern -> aihwkit config, as :func:`attach` gave them (empty: one for all)."""
    found: dict[str, Any] = getattr(rpu, _ATTRIBUTE, {})
    return found


def plain(rpu: Any) -> Any:
    """``rpu`` without the per-layer configurations (a shallow copy when it has them)."""
    if not layer_configs(rpu):
        return rpu
    bare = copy.copy(rpu)
    delattr(bare, _ATTRIBUTE)
    return bare


def match(rpu: Any, name: str) -> Any | None:
    """The configuration of the first pattern matching layer ``name`` (``None``: none)."""
    for pattern, config in layer_configs(rpu).items():
        if fnmatch.fnmatchcase(name, pattern):
            return config
    return None


def chooser(rpu: Any) -> Callable[[str], Any]:
    """``layer name -> aihwkit config``: the first matching pattern's, else ``rpu``'s own."""
    base = plain(rpu)

    def choose(name: str) -> Any:
        found = match(rpu, name)
        return base if found is None else found

    return choose


def unmatched(rpu: Any, names: Iterable[str], rpu_path: str) -> list[Problem]:
    """A problem for each pattern that matches none of the analog layers ``names``."""
    names = list(names)
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return [
        (
            f"{rpu_path}.layers.{pattern}",
            f"matches no analog layer; the analog layers are {shown or 'none'}",
        )
        for pattern in layer_configs(rpu)
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names)
    ]
