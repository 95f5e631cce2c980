"""``dataset: {name: torch, factory: package.module:function, args: {...}}``: the user's data.

The contract: ``factory(**args)`` returns a mapping with the arrays ``x_train``,
``y_train``, ``x_test``, ``y_test`` (or ``x`` and ``y``, split by ``test_fraction``),
each a numpy array or a torch tensor of numbers (moved to the CPU), ``x`` shaped
``(samples, features...)``, ``y`` one integer class label per sample (classification)
or float targets (regression; ``task`` says which when it is not inferred), exactly as
an ``npz`` set holds them; nothing is unpickled.

The function is imported from the simulator's environment and its arguments checked
against its signature by the machinery of ``model: {torch: ...}``
(:mod:`aif.aims.analog.torch_models`): the basic profile trusts the environment, the
secure profile only a signed Store package (:mod:`aif.aims.analog.trusted_code`). Every
fault is a problem at ``dataset.factory`` or ``dataset.args.<name>``: the module does not
import, the name is missing, the call raises, or it returns something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aif.aims.analog.data_files import FileSet, array_set
from aif.errors import ExperimentError

_WHERE = "dataset.factory"
#: The keys a factory's mapping holds: one of these sets, exactly.
KEYS = (("x", "y"), ("x_train", "y_train", "x_test", "y_test"))


def _fail(factory: str, problems: list[tuple[str, str]]) -> ExperimentError:
    return ExperimentError(f"dataset 'torch' from {factory} cannot be read", problems)


def read_factory(factory: str, args: Mapping[str, Any], task: str | None) -> FileSet:
    """Call ``factory`` with ``args`` and check what it returns (ExperimentError if wrong)."""
    from aif.aims.analog.aihwkit_names import describe
    from aif.aims.analog.overrides import call_with
    from aif.aims.analog.torch_models import load_factory

    try:
        function = load_factory(factory, _WHERE)
    except ExperimentError as exc:
        raise _fail(factory, exc.problems) from exc
    kwargs, problems = call_with(function, args, "dataset.args")
    if problems:
        raise _fail(factory, problems)
    call = f"{factory.partition(':')[2]}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        result = function(**kwargs)
    except Exception as exc:  # the user's code refuses its arguments
        raise _fail(
            factory, [(_WHERE, f"{call} raises {describe(exc)}; fix its code or 'dataset.args'")]
        ) from exc
    arrays = _arrays(call, result)
    return array_set(arrays, task, _WHERE, f"dataset 'torch' from {factory} cannot be read")


def _arrays(call: str, result: object) -> dict[str, np.ndarray]:
    import torch

    wanted = "a mapping of x_train, y_train, x_test, y_test (or x, y)"
    if not isinstance(result, Mapping):
        raise _fail(call, [(_WHERE, f"{call} returns a {type(result).__name__}, not {wanted}")])
    keys = set(map(str, result))
    chosen = next((k for k in KEYS if set(k) == keys), None)
    if chosen is None:
        raise _fail(
            call, [(_WHERE, f"{call} returns keys {sorted(keys)}; it must return {wanted}")]
        )
    arrays: dict[str, np.ndarray] = {}
    problems = []
    for key in chosen:
        value = result[key]
        if isinstance(value, torch.Tensor):
            arrays[key] = value.detach().cpu().numpy()
        elif isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            problems.append(
                (
                    _WHERE,
                    f"{call} gives {key!r} as a {type(value).__name__}; give a numpy "
                    "array or a torch tensor",
                )
            )
    if problems:
        raise _fail(call, problems)
    return arrays
