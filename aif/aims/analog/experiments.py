"""``experiment-source``: reads the experiments a workflow runs and hands them on.

Experiments live in YAML files beside the workflow (``workflows/experiments/``), or
inline in the workflow's parameters. This AIM only reads them: checking is the
validator's job, so a file that does not parse still becomes a record (with
``error`` set) and the user sees it among the rejections instead of a crashed run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic

from aif.aims.analog.records import EXPERIMENT_RECORD
from aif.aims.base import AIM
from aif.errors import InputError
from aif.inputs.files import read_text_file
from aif.inputs.safe_yaml import load_yaml


class ExperimentSourceParams(pydantic.BaseModel):
    """Parameters of ``experiment-source``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    files: list[str] = pydantic.Field(
        default_factory=list,
        description="experiment YAML files (one mapping, or a list of mappings each), "
        "relative to the workflow's folder",
    )
    experiments: list[dict[str, Any]] = pydantic.Field(
        default_factory=list, description="experiments written inline"
    )

    @pydantic.model_validator(mode="after")
    def _something(self) -> ExperimentSourceParams:
        if not self.files and not self.experiments:
            raise ValueError("give 'files' (experiment YAML paths) or 'experiments' (inline)")
        return self


def read_experiment_file(path: Path) -> list[Any]:
    """The experiment mappings in one YAML file (raises ``InputError``, a ``ValueError``,
    saying why not: the file's size, kind and YAML are read as a workflow's are)."""
    text = read_text_file(path, "experiment file")
    try:
        data, _ = load_yaml(text, str(path), kind="experiments")
    except InputError as exc:
        raise InputError(f"experiment file {str(path)!r} is not valid YAML", exc.problems) from exc
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and data:
        return data
    raise InputError(
        f"experiment file {str(path)!r} must hold a mapping (name:, model:, ...) or a list of them"
    )


def experiment_json(raw: Any) -> str:
    """The raw mapping as it travels to the validator: JSON, YAML's dates as text."""
    return json.dumps(raw, default=str)


def anchor_paths(raw: Any, folder: Path) -> None:
    """Make relative ``dataset.path`` and ``model.weights`` relative to the experiment file.

    The validator and the simulator read paths from the workflow's folder; an
    experiment file may live elsewhere (``experiments/``), so its own relative paths
    are resolved here, against its folder, before they travel on.
    """
    if not isinstance(raw, dict):
        return
    anchor_path(raw.get("dataset"), "path", folder)
    anchor_path(raw.get("model"), "weights", folder)


def anchor_path(section: Any, key: str, folder: Path) -> None:
    """``section[key]``, a relative path, made absolute against ``folder`` (in place)."""
    path = section.get(key) if isinstance(section, dict) else None
    if isinstance(path, str) and path and not Path(path).is_absolute():
        section[key] = str((folder / path).resolve())


def _name_of(raw: Any, fallback: str) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) and name else fallback


class ExperimentSource(AIM):
    """Reads experiment files (and inline experiments) and sends each to the validator."""

    outputs = {"experiments": EXPERIMENT_RECORD}
    Params = ExperimentSourceParams
    #: Light, but a fork of a warm worker starts in milliseconds where a fresh Python
    #: takes half a second: the daemon runs it in its own process (``--inproc light``).
    warm_modules: tuple[str, ...] = ()

    async def run(self) -> None:
        assert isinstance(self.params, ExperimentSourceParams)
        sent = 0
        for file in self.params.files:
            path = Path(file)
            if not path.is_absolute():
                path = self.base_dir / path
            try:
                entries = read_experiment_file(path)
            except ValueError as exc:
                await self._emit(path.stem, file, None, str(exc))
                sent += 1
                continue
            for i, raw in enumerate(entries):
                source = file if len(entries) == 1 else f"{file}[{i}]"
                anchor_paths(raw, path.parent)
                await self._emit(_name_of(raw, path.stem), source, raw, "")
                sent += 1
        for i, raw in enumerate(self.params.experiments):
            await self._emit(_name_of(raw, f"inline-{i}"), f"inline[{i}]", raw, "")
            sent += 1
        await self.result(experiments=sent)

    async def _emit(self, name: str, source: str, raw: Any, error: str) -> None:
        spec = experiment_json(raw) if raw is not None else ""
        await self.send(
            "experiments", {"name": name, "source": source, "spec": spec, "error": error}
        )
