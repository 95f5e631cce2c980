"""Training in half precision: the model and its inputs in bfloat16 or float16.

aihwkit trains torch-based tiles (``TorchInferenceRPUConfig`` and the other torch
families) in half precision when the model is cast to it (its example 35); the C++
RPUCuda tiles refuse any dtype but their own. The rest of aif hands the model float32
batches and expects float32 outputs (losses, accuracy, mse), so :func:`train_in` casts
the model and adds two forward hooks: inputs are cast to the training dtype on the way
in and outputs back to float32 on the way out. Nothing else in the training loop
changes, and the model's state-dict keys stay those of the unwrapped model.

After training, :meth:`HalfPrecision.release` casts the model back to float32 and
removes the hooks: aihwkit 1.2.0's drift compensation reads the tiles with a float32
reference and fails on half-precision weights, and checkpoints stay float32 so any
later experiment can load them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

#: The precision names of ``training.precision`` and their torch dtypes.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass
class HalfPrecision:
    """A model cast to a half-precision dtype, with the hooks that adapt its edges."""

    model: torch.nn.Module
    dtype: torch.dtype
    _handles: list[Any] = field(default_factory=list)

    def release(self) -> None:
        """Back to float32 without the hooks; idempotent."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.model.to(dtype=torch.float32)


def train_in(model: torch.nn.Module, precision: str) -> HalfPrecision | None:
    """Cast ``model`` to ``precision`` for training; None (and no change) for float32."""
    dtype = DTYPES[precision]
    if dtype == torch.float32:
        return None
    model.to(dtype=dtype)

    def cast_inputs(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args
        )

    def cast_output(_module: torch.nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            return output.float()
        return output

    handles = [
        model.register_forward_pre_hook(cast_inputs),
        model.register_forward_hook(cast_output),
    ]
    return HalfPrecision(model, dtype, handles)
