"""The digital twin of an experiment's model: what a deployment target rebuilds.

The simulator sends a trained model as a MODEL record: the job's spec and the weights a
digital model of the same layers holds (``aif.aims.analog.checkpoint.digital_weights``).
Here those layers are built as plain torch modules, in the same order, so the
state-dict keys (``"0.weight"``, ``"3.bias"``) match, and the record's tensors are
checked and loaded. :mod:`~aif.aims.analog.imc_chip.mapping` then moves the analog ones
onto tiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aif.aims.analog.layers import layer_step
from aif.aims.analog.spec import ModelSpec
from aif.errors import ExperimentError


@dataclass(frozen=True)
class DigitalModel:
    """The experiment's layers as plain torch modules, and which of them are analog.

    ``model[i]`` is layer ``i`` of the spec, so state-dict keys are ``"0.weight"``,
    ``"3.bias"``, ... as the simulator's ``AnalogSequential`` names them.
    """

    model: torch.nn.Sequential
    analog: tuple[int, ...]


def build_digital_model(spec: ModelSpec, sample_shape: tuple[int, ...]) -> DigitalModel:
    """Every layer of ``spec`` built digitally, sizes inferred from ``sample_shape``.

    Raises :class:`ExperimentError` with a problem per faulty layer (as the simulator's
    builder does).
    """
    if spec.layers is None:
        raise ExperimentError(
            "the IMC chip maps layer lists only",
            [("model", f"a {spec.source} model cannot be mapped onto the chip; use 'layers'")],
        )
    problems: list[tuple[str, str]] = []
    modules: list[torch.nn.Module] = []
    shape: tuple[int, ...] | None = tuple(sample_shape)
    for i, layer in enumerate(spec.layers):
        shape, factory = layer_step(layer, shape, f"model.layers.{i}", problems)
        if factory is not None:
            modules.append(factory(None))
    if problems:
        raise ExperimentError("the model cannot be built as written", problems)
    analog = tuple(i for i in range(len(spec.layers)) if spec.is_analog(i))
    return DigitalModel(torch.nn.Sequential(*modules), analog)


#: Buffers a model record may leave out: only training updates them.
_OPTIONAL = ("num_batches_tracked",)


def load_tensors(model: torch.nn.Module, names: Sequence[str], tensors: Sequence[Any]) -> None:
    """Put a MODEL record's ``names``/``tensors`` into ``model``, checking everything first.

    Raises :class:`ExperimentError` with one problem per missing, unexpected, duplicate,
    mis-shaped or non-finite tensor; the model is unchanged then.
    """
    expected = model.state_dict()
    problems: list[tuple[str, str]] = []
    if len(names) != len(tensors):
        problems.append(
            ("tensors", f"{len(tensors)} tensors for {len(names)} names; send one per name")
        )
    given: dict[str, torch.Tensor] = {}
    for name, value in zip(names, tensors, strict=False):
        if name in given:
            problems.append((f"names.{name}", "appears twice; send each tensor once"))
            continue
        given[name] = torch.as_tensor(np.array(value, dtype=np.float32))
    for name, want in expected.items():
        if name not in given:
            if not name.endswith(_OPTIONAL):
                problems.append(
                    (
                        f"names.{name}",
                        f"missing: the model needs a tensor of shape {list(want.shape)} "
                        "here; was the record made from the same layers?",
                    )
                )
            continue
        got = given[name]
        if tuple(got.shape) != tuple(want.shape):
            problems.append(
                (
                    f"tensors.{name}",
                    f"has shape {list(got.shape)} but the model needs {list(want.shape)}",
                )
            )
        elif not bool(torch.isfinite(got).all()):
            problems.append((f"tensors.{name}", "holds NaN or infinite values"))
    for name in given:
        if name not in expected:
            problems.append(
                (f"names.{name}", "is not a tensor of this model; was it made from other layers?")
            )
    if problems:
        raise ExperimentError("the model record does not fit the experiment's model", problems)
    state = {name: given[name].to(expected[name].dtype) for name in expected if name in given}
    model.load_state_dict(state, strict=False)
