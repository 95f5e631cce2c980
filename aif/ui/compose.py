"""What the composer sends to the daemon: the validator's review of an experiment, and
the analog workflow an experiment runs in when submitted from the UI.

The workflow is ``workflows/hwa-training.yaml``'s shape (experiment source with the
experiment inline, validator, simulator in its own process, reporter), written as JSON,
which is YAML: nothing the user wrote can change its structure.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

#: The workflow an experiment from the UI runs in (workflows/hwa-training.yaml's shape).
CONNECTIONS = [
    "experiments.experiments -> validator.experiments",
    "validator.jobs -> simulator.jobs",
    "validator.rejections -> reporter.rejections",
    "simulator.metrics -> reporter.metrics",
    "simulator.results -> reporter.results",
]


def review(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """The validator's review of one experiment, as ``/api/check`` answers it."""
    from aif.aims.analog.validator import review_experiment

    verdict = review_experiment(raw, base_dir)
    normalised = None
    if verdict.experiment is not None:
        try:
            normalised = verdict.experiment.model_dump(mode="json", exclude_none=True)
        except (TypeError, ValueError):
            normalised = None
    return {
        "ok": verdict.accepted,
        "problems": [{"field": path, "message": message} for path, message in verdict.problems],
        "experiment": normalised,
    }


def workflow_name(given: str) -> str:
    """A workflow name (``[a-z0-9][a-z0-9-]*``) made from the user's name."""
    name = re.sub(r"[^a-z0-9-]+", "-", given.lower()).strip("-")[:48].strip("-")
    return name or "composer"


def workflow_text(name: str, experiment: dict[str, Any]) -> str:
    """The analog workflow that runs one experiment (a sweep is one too), as YAML text
    (JSON is YAML: nothing the user wrote can change its structure)."""
    workflow = {
        "name": name,
        "description": "submitted from the web UI",
        "aims": {
            "experiments": {"type": "experiment-source", "params": {"experiments": [experiment]}},
            "validator": {"type": "analog-validator"},
            "simulator": {"type": "analog-simulator", "placement": "process"},
            "reporter": {"type": "analog-reporter"},
        },
        "connections": CONNECTIONS,
    }
    return json.dumps(workflow, indent=1)
