"""What the validator refuses about how a job runs, beyond shapes and aihwkit names.

* ``training.early_stopping`` watches a validation metric, so it needs
  ``dataset.validation_fraction > 0``;
* ``inference.calibrate`` sets the input ranges of the tiles, so every configuration
  that drifts must have them (aihwkit's ``calibrate_input_ranges`` skips the others
  silently; here that is an error, naming the configuration);
* ``training.precision`` other than float32 needs torch-based tiles: aihwkit's C++
  RPUCuda tiles hold float32 weights only and refuse a half-precision model;
* ``training.distributed`` needs inference tiles (aihwkit's ``prepare_for_ddp`` refuses
  the others: a pulsed device updates its weights inside the tile, where DDP cannot
  average them), a batch every rank has a share of, and ``nccl`` a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aif.aims.analog.spec import Experiment

Problem = tuple[str, str]


def run_problems(experiment: Experiment) -> list[Problem]:
    """The problems of ``experiment``'s early stopping and calibration (empty: none)."""
    problems: list[Problem] = []
    training = experiment.training
    if training.early_stopping is not None and experiment.dataset.validation_fraction <= 0:
        problems.append(
            (
                "training.early_stopping",
                "watches a validation metric but dataset.validation_fraction is 0; set "
                "dataset.validation_fraction (e.g. 0.1) or remove training.early_stopping",
            )
        )
    inference = experiment.inference
    if inference is not None and inference.calibrate is not None:
        problems += _calibration_problems(experiment)
    problems += _precision_problems(experiment)
    if training.distributed is not None:
        problems += _distributed_problems(experiment)
    return problems


def _built_configurations(experiment: Experiment) -> Iterator[tuple[str, Any]]:
    """``(path, rpu_config)`` of each configuration that builds (``rpu`` or ``sweep.X``);
    one that does not is skipped here, because check_experiment reports it already."""
    from aif.aims.analog.build import build_rpu_config
    from aif.errors import ExperimentError

    for label, rpu in experiment.configurations().items():
        path = f"sweep.{label}" if label else "rpu"
        try:
            yield path, build_rpu_config(rpu, path)
        except ExperimentError:
            continue


def _precision_problems(experiment: Experiment) -> list[Problem]:
    from aif.aims.analog.build import family_of, tile_kind

    problems: list[Problem] = []
    for path, config in _built_configurations(experiment):
        data_type = getattr(getattr(config, "runtime", None), "data_type", None)
        half_runtime = getattr(data_type, "value", None) == "half"
        if experiment.training.precision == "float32":
            if half_runtime:
                problems.append(
                    (
                        f"{path}.runtime.data_type",
                        "half tiles need a half-precision model; set training.precision "
                        "to bfloat16 or float16, or remove runtime.data_type",
                    )
                )
        elif tile_kind(config) != "torch":
            problems.append(
                (
                    "training.precision",
                    f"{experiment.training.precision} needs torch-based tiles, but {path} is "
                    f"a {family_of(config)} (C++ tiles, float32 only); use "
                    "TorchInferenceRPUConfig (or another Torch* configuration) or precision "
                    "float32",
                )
            )
    return problems


def _calibration_problems(experiment: Experiment) -> list[Problem]:
    from aif.aims.analog.build import family_of
    from aif.aims.analog.calibration import has_input_ranges

    problems: list[Problem] = []
    for path, config in _built_configurations(experiment):
        if not has_input_ranges(config):
            problems.append(
                (
                    "inference.calibrate",
                    f"{path} is a {family_of(config)}, whose tiles have no input ranges to "
                    "calibrate; use an inference configuration (InferenceRPUConfig, "
                    "TorchInferenceRPUConfig) or remove inference.calibrate",
                )
            )
    return problems


def _distributed_problems(experiment: Experiment) -> list[Problem]:
    from aif.aims.analog.build import family_of, is_inference_family

    distributed = experiment.training.distributed
    assert distributed is not None
    problems: list[Problem] = []
    ranks, batch = distributed.ranks, experiment.dataset.batch_size
    if batch < ranks:
        problems.append(
            (
                "dataset.batch_size",
                f"{batch} samples cannot be shared by {ranks} ranks: each rank takes part "
                f"of every batch; set a batch_size of at least {ranks} (the global batch) "
                "or fewer ranks",
            )
        )
    if distributed.backend == "nccl" and experiment.device != "cuda":
        problems.append(
            (
                "training.distributed.backend",
                "nccl reduces GPU tensors only; set device: cuda, or backend: gloo",
            )
        )
    for path, config in _built_configurations(experiment):
        if not is_inference_family(config):
            problems.append(
                (
                    "training.distributed",
                    f"{path} is a {family_of(config)}, whose tiles DDP cannot train (their "
                    "updates happen inside the tile; aihwkit's prepare_for_ddp supports "
                    "inference tiles only); use InferenceRPUConfig or "
                    "TorchInferenceRPUConfig for hardware-aware training, or remove "
                    "training.distributed",
                )
            )
    return problems
