"""``--set KEY=VALUE``: change one value of a workflow file for one run, without editing it.

``KEY`` is a dotted path into the YAML document, ``VALUE`` is read as YAML (so ``8``,
``true``, ``[1s, 1h]`` and ``{seed: 3}`` keep their types; quote to force a string)::

    aif run workflows/chip-deploy.yaml --set aims.chip.params.chip=tcp://lab-board:5555

Missing mappings on the way are created; stepping into a value that is not a mapping
is refused with the path that is in the way. The result is checked like the file
itself, so an override that makes the workflow invalid gets the usual messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from aif.errors import WorkflowError

_HINT = "write --set KEY=VALUE, KEY a dotted path such as aims.chip.params.chip"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → ``(["a", "b"], 3)``; raises ``WorkflowError`` naming the fault."""
    key, sep, value = text.partition("=")
    path = key.strip().split(".")
    if not sep or not key.strip() or any(not part.strip() for part in path):
        raise WorkflowError(f"--set {text!r} is not KEY=VALUE", [_HINT])
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WorkflowError(
            f"--set {text!r}: the value is not YAML",
            [f"{key}: {reason}; quote it to pass a string: {key}='...'"],
        ) from exc
    return [part.strip() for part in path], parsed


def apply_overrides(data: Any, overrides: Sequence[str]) -> Any:
    """``data`` (a parsed workflow document) with each ``KEY=VALUE`` applied, in order."""
    for text in overrides:
        path, value = parse_override(text)
        if not isinstance(data, dict):
            raise WorkflowError(f"--set {text!r}: the workflow is not a mapping")
        node: dict[str, Any] = data
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise WorkflowError(
                    f"--set {text!r}: {where} is a {type(child).__name__}, not a mapping",
                    [f"{where}: set {where} itself, or a key of a mapping"],
                )
            node = child
        node[path[-1]] = value
    return data
