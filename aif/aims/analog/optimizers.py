"""The optimizers aihwkit supports: its own ``AnalogSGD`` and ``AnalogAdam``, and any
torch optimizer wrapped in ``AnalogOptimizer``.

``training.optimizer.name`` is ``AnalogSGD``, ``AnalogAdam`` or the class name of a
``torch.optim`` optimizer (``AdamW``, ``RMSprop``, ``Adagrad``, ...). aihwkit's
``AnalogOptimizer`` wraps the torch class so that analog tiles take their update the
analog way (pulses for pulsed devices; the torch rule for hardware-aware training) and
digital parameters the torch way. Three torch optimizers are refused because aif's
training loop cannot drive them: ``LBFGS`` needs a closure per step, ``SparseAdam``
only sparse gradients, ``Muon`` only two-dimensional parameters.

:func:`optimizer_problems` checks the arguments without building anything: torch
imports ``torch._dynamo`` (about 1.5 s) when it builds its first optimizer, which would
put the validator on the workflow's critical path.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from aif.aims.analog import spec as s
from aif.aims.analog.aihwkit_names import unknown
from aif.aims.analog.overrides import call_with
from aif.errors import ExperimentError

Problem = tuple[str, str]

#: Torch optimizers aif's step loop cannot drive, with the reason.
REFUSED = {
    "LBFGS": "needs a closure that re-evaluates the loss at every step",
    "SparseAdam": "takes sparse gradients only",
    "Muon": "takes two-dimensional parameters only",
}


@functools.cache
def torch_optimizers() -> dict[str, type]:
    """The ``torch.optim`` optimizer classes aif can wrap, by name."""
    return {
        name: cls
        for name, cls in vars(torch.optim).items()
        if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
        and name not in REFUSED
    }


def optimizer_names() -> list[str]:
    """Every name ``training.optimizer.name`` accepts."""
    return ["AnalogSGD", "AnalogAdam", *sorted(torch_optimizers())]


def _torch_class(name: str) -> type | None:
    """The torch class that ``name``'s arguments follow (``AnalogSGD`` follows ``SGD``)."""
    if name in ("AnalogSGD", "AnalogAdam"):
        from aihwkit.optim import AnalogAdam, AnalogSGD

        own: type = AnalogSGD if name == "AnalogSGD" else AnalogAdam
        return own
    return torch_optimizers().get(name)


def _arguments(spec: s.OptimizerSpec) -> tuple[type | None, dict[str, Any], list[Problem]]:
    where = "training.optimizer"
    cls = _torch_class(spec.name)
    if cls is None:
        reason = REFUSED.get(spec.name)
        message = (
            f"{spec.name} {reason}, which aif's training loop does not provide; "
            f"use one of {', '.join(optimizer_names())}"
            if reason
            else unknown("optimizer", spec.name, optimizer_names())
        )
        return None, {}, [(f"{where}.name", message)]
    params = {k: v for k, v in spec.params.items() if k != "lr"}
    kwargs, problems = call_with(cls, params, f"{where}.params", skip=("params", "lr"))
    if "lr" in spec.params:
        problems.insert(0, (f"{where}.params.lr", "set training.optimizer.lr instead"))
    return cls, kwargs, problems


def build_optimizer(spec: s.TrainingSpec, model: torch.nn.Module) -> Any:
    """The optimizer of ``spec`` over ``model``, regrouped for its analog tiles."""
    from aihwkit.optim import AnalogOptimizer

    opt = spec.optimizer
    cls, kwargs, problems = _arguments(opt)
    if cls is None or problems:
        raise ExperimentError("the optimizer cannot be built", problems)
    try:
        if opt.name in ("AnalogSGD", "AnalogAdam"):
            optimizer = cls(model.parameters(), lr=opt.lr, **kwargs)
        else:
            optimizer = AnalogOptimizer(cls, model.parameters(), lr=opt.lr, **kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ExperimentError(
            "the optimizer cannot be built",
            [("training.optimizer.params", f"{opt.name} refuses: {exc}")],
        ) from exc
    optimizer.regroup_param_groups(model)
    return optimizer


def optimizer_problems(spec: s.TrainingSpec) -> list[Problem]:
    """The optimizer's faults, from its signature and torch's own value rules.

    Nothing is built (see the module docstring). The value rules are the ones torch's
    optimizers enforce when built: no negative rates, decays or epsilons; betas in
    [0, 1); Nesterov momentum needs momentum and no dampening.
    """
    cls, kwargs, problems = _arguments(spec.optimizer)
    if cls is None:
        return problems
    where = "training.optimizer.params"
    for key in ("momentum", "dampening", "weight_decay", "eps", "lr_decay", "alpha"):
        value = kwargs.get(key)
        if isinstance(value, int | float) and value < 0:
            problems.append((f"{where}.{key}", f"must be at least 0, got {value}"))
    betas = kwargs.get("betas")
    if isinstance(betas, list | tuple) and not all(
        isinstance(b, int | float) and 0 <= b < 1 for b in betas
    ):
        problems.append((f"{where}.betas", f"each beta must be in [0, 1), got {list(betas)}"))
    if kwargs.get("nesterov") and (kwargs.get("momentum", 0) <= 0 or kwargs.get("dampening", 0)):
        problems.append(
            (f"{where}.nesterov", "needs momentum above 0 and dampening 0 (torch's rule)")
        )
    return problems
