"""``--set KEY=VALUE``: change one value of a workflow file for one run, without editing it.

``KEY`` is a dotted path into the YAML document, ``VALUE`` is read as YAML (so ``8``,
``true``, ``[1s, 1h]`` and ``{seed: 3}`` keep their types; quote to force a string)::

    aif run workflows/chip-deploy.yaml --set aims.chip.params.chip=tcp://lab-board:5555

Missing mappings on the way are created; stepping into a value that is not a mapping
is refused with the path that is in the way. The result is checked like the file
itself, so an override that makes the workflow invalid gets the usual messages. A value
is read by the same safe loader as the file (:mod:`aif.inputs.safe_yaml`: depth,
aliases, keys and size bounded), and at most :data:`MAX_VALUE_CHARS` long.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aif.errors import InputError, WorkflowError
from aif.inputs import safe_yaml

_HINT = "write --set KEY=VALUE, KEY a dotted path such as aims.chip.params.chip"
#: Longest ``--set`` value; bulk data belongs in a file.
MAX_VALUE_CHARS = 64 * 1024


def _short(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → ``(["a", "b"], 3)``; raises ``WorkflowError`` naming the fault."""
    key, sep, value = text.partition("=")
    path = key.strip().split(".")
    if not sep or not key.strip() or any(not part.strip() for part in path):
        raise WorkflowError(f"--set {_short(text)} is not KEY=VALUE", [_HINT])
    if len(path) > safe_yaml.MAX_DEPTH:
        raise WorkflowError(
            f"--set {_short(text)}: KEY has {len(path)} parts",
            [f"{_short(key)}: at most {safe_yaml.MAX_DEPTH} parts; {_HINT}"],
        )
    try:
        parsed = (
            safe_yaml.load_yaml(
                value, f"--set {key}", max_chars=MAX_VALUE_CHARS, kind="--set values"
            )[0]
            if value.strip()
            else ""
        )
    except InputError as exc:
        raise WorkflowError(
            f"--set {_short(text)}: the value is not YAML",
            [f"{p}; quote it to pass a string: {key}='...'" for p in exc.problems],
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
