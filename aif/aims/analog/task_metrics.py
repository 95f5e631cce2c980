"""What a job measures, by task: accuracy for classification, mean squared error for
regression (an ``npz`` set with float targets, trained with ``loss: mse``).

The number travels in the records' ``accuracy`` fields whatever the task, and the
results' ``metric`` field names it (``accuracy`` or ``mse``), so the reporter knows
that a lower mse is better. ``loss: mse`` on a classification set compares the
outputs with one-hot labels and still reports accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from aif.aims.analog.training import evaluate

Score = Callable[[Any, np.ndarray, np.ndarray, int, torch.device], float]


def metric_name(task: str) -> str:
    """``accuracy`` for classification, ``mse`` for regression."""
    return "mse" if task == "regression" else "accuracy"


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (accuracy) or worse (mse, losses)."""
    return metric == "accuracy"


def model_outputs(data: Any) -> int:
    """The outputs the model's last layer must give: one per class, or per target."""
    if getattr(data, "task", "classification") != "regression":
        return int(data.classes)
    y = data.y_train if len(data.y_train) else data.y_test
    return int(np.prod(y.shape[1:])) if y.ndim > 1 else 1


def mse_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; integer targets are class labels, compared one-hot."""
    if target.dtype in (torch.int64, torch.int32):
        target = torch.nn.functional.one_hot(target, output.shape[1])
    return torch.nn.functional.mse_loss(output, target.to(output.dtype).reshape(output.shape))


def mse(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int, device: torch.device) -> float:
    """Mean squared error of ``model`` on ``(x, y)``: eval mode, no gradients, NaN for none."""
    return mean_loss(model, x, y, mse_loss, batch_size, device)


def mean_loss(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device,
) -> float:
    """Sample-weighted mean of ``loss_fn`` over ``(x, y)`` (eval mode, no gradients)."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
    if len(y) == 0:
        return math.nan
    labels = np.float32 if y.dtype.kind == "f" else np.int64
    was_training = bool(model.training)
    model.eval()
    total = 0.0
    try:
        with torch.no_grad():
            for lo in range(0, len(y), batch_size):
                xb = np.ascontiguousarray(x[lo : lo + batch_size], dtype=np.float32)
                yb = np.ascontiguousarray(y[lo : lo + batch_size], dtype=labels)
                output = model(torch.from_numpy(xb).to(device))
                loss = loss_fn(output, torch.from_numpy(yb).to(device))
                total += float(loss.item()) * len(yb)
    finally:
        model.train(was_training)
    return total / len(y)


def score_function(task: str) -> Score:
    """The test metric of ``task``: :func:`aif.aims.analog.training.evaluate` or :func:`mse`."""
    return mse if task == "regression" else evaluate
