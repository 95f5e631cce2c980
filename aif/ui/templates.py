"""What the composer starts from: experiment templates, the spec's schema, aihwkit's names.

Templates are the shipped experiments (``workflows/experiments/*.yml``) and aihwkit's
examples as aif experiments (``examples/aihwkit/*.yaml``), read with aif's bounded YAML
loader from the source tree when it is there (neither folder is package data). An
example that reads a data file flags ``needs_data`` unless the file is there; a
relative data path that is there is made absolute, so the template runs as it is.

The schema is ``Experiment``'s JSON Schema; the names (config families, presets,
devices, noise models, drift compensations) come from the installed aihwkit, imported
once, in a worker thread, and kept.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

from aif.errors import AIFError

#: The source tree beside the package (None in an installed wheel).
ROOT = Path(__file__).resolve().parents[2]
#: (folder under ROOT, file pattern, id prefix) of each kind of template.
SOURCES = (
    ("workflows/experiments", "*.yml", "shipped"),
    ("examples/aihwkit", "*.yaml", "aihwkit"),
)


def _comment(text: str) -> str:
    """The file's leading comment, as a description."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def _template(path: Path, prefix: str) -> dict[str, Any] | None:
    from aif.inputs.files import read_text_file
    from aif.inputs.safe_yaml import load_yaml

    try:
        text = read_text_file(path, "experiment file")
        data, _ = load_yaml(text, str(path), kind="experiments")
    except (AIFError, OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    needs_data = False
    dataset = data.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("path"), str):
        where = path.parent / dataset["path"]
        if where.exists():
            data["dataset"] = {**dataset, "path": str(where.resolve())}
        else:
            needs_data = True
    return {
        "id": f"{prefix}/{path.stem}",
        "title": str(data.get("name", path.stem)),
        "description": str(data.get("description", "")) or _comment(text),
        "experiment": data,
        "needs_data": needs_data,
        "source": f"{path.parent.name}/{path.name}",
    }


@functools.cache
def templates(root: Path = ROOT) -> tuple[dict[str, Any], ...]:
    """Every template found under ``root`` (read once)."""
    found = []
    for folder, pattern, prefix in SOURCES:
        for path in sorted((root / folder).glob(pattern)):
            template = _template(path, prefix)
            if template is not None:
                found.append(template)
    return tuple(found)


@functools.cache
def _schema() -> dict[str, Any]:
    from aif.aims.analog import aihwkit_names
    from aif.aims.analog.spec import Experiment

    configs = aihwkit_names.config_classes()
    families = aihwkit_names.family_classes()
    return {
        "schema": Experiment.model_json_schema(),
        "names": {
            "families": sorted(families),
            "presets": sorted(set(configs) - set(families)),
            "devices": sorted(aihwkit_names.device_classes()),
            "noise_models": sorted(aihwkit_names.noise_model_classes()),
            "drift_compensations": sorted(aihwkit_names.drift_compensation_classes()),
        },
    }


_lock = asyncio.Lock()


async def schema() -> dict[str, Any]:
    """The schema and aihwkit's names (aihwkit is imported in a thread the first time)."""
    async with _lock:
        return await asyncio.to_thread(_schema)
