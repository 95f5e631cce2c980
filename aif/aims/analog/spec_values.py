"""Numbers in an experiment that YAML allows but an experiment cannot use.

YAML reads ``.nan``, ``.inf`` and ``1e400`` (infinity) as floats and ``true`` as a
boolean, which pydantic's lax mode would take for the integer 1. The spec modules use
these checks where such values make no sense: the free-form sections handed to aihwkit
(RPU sections, device and noise-model parameters, optimizer arguments), integer fields,
and sizes that would allocate more than a machine has before anything is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic

#: Most weights of one layer (``in x out``, or ``in_channels x out_channels x k x k``):
#: 2^28 float32 weights are 1 GiB, several times that with gradients and the optimizer.
MAX_LAYER_WEIGHTS = 1 << 28
#: Most bytes of the samples a data set may hold in memory (float32).
MAX_DATASET_BYTES = 1 << 30


def _no_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got the boolean {str(value).lower()}")
    return value


#: An integer field that refuses ``true`` and ``false`` (pydantic would read them as 1, 0).
Int = Annotated[int, pydantic.BeforeValidator(_no_bool)]

_NOT_NEGATIVE = ("_noise", "_std", "_dtod", "_ctoc")


def number_faults(values: Any, where: str) -> list[str]:
    """Faults of the numbers in a free-form mapping (nested mappings and lists too):
    NaN or infinity anywhere; a negative noise or deviation (``*_noise``, ``*_std``)."""
    faults: list[str] = []
    _walk(values, where, faults)
    return faults


def _walk(value: Any, where: str, faults: list[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if (
                isinstance(item, int | float)
                and not isinstance(item, bool)
                and math.isfinite(item)
                and item < 0
                and str(key).endswith(_NOT_NEGATIVE)
            ):
                faults.append(f"{path} is {item}; a noise or deviation cannot be negative")
            _walk(item, path, faults)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{where}.{index}", faults)
    elif isinstance(value, float) and not math.isfinite(value):
        faults.append(f"{where} is {value}; give a finite number")


def refuse_bad_numbers(values: Any, where: str) -> Any:
    """``values`` unchanged, or a ``ValueError`` listing :func:`number_faults`."""
    faults = number_faults(values, where)
    if faults:
        raise ValueError("; ".join(faults))
    return values
