"""Dataset factories of a user's own, for ``dataset: {name: torch, factory: ...}``.

``blobs`` is a good factory (numpy train/test arrays), ``tensors`` returns torch tensors
and one unsplit set; the others are the mistakes the validator must refuse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def blobs(samples: int = 40, features: int = 6, classes: int = 3) -> dict[str, np.ndarray]:
    """Separable classes around one random centre each, split 3:1."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 3.0, (classes, features))
    y = np.arange(samples) % classes
    x = (centres[y] + rng.normal(0.0, 0.5, (samples, features))).astype(np.float32)
    cut = samples * 3 // 4
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


def tensors(samples: int = 20) -> dict[str, torch.Tensor]:
    """``x`` and ``y`` only, as tensors: the set is split by ``test_fraction``."""
    x = torch.arange(samples * 4, dtype=torch.float32).reshape(samples, 4)
    return {"x": x, "y": torch.arange(samples) % 2}


def raises() -> dict[str, Any]:
    """Fails like a factory whose data is missing."""
    raise FileNotFoundError("no such file: data.csv")


def a_list() -> list[int]:
    """Not a mapping."""
    return [1, 2, 3]


def wrong_keys() -> dict[str, np.ndarray]:
    """``train``/``test`` instead of the contract's keys."""
    return {"train": np.zeros((2, 2)), "test": np.zeros((2, 2))}


def objects() -> dict[str, Any]:
    """Python lists and an object array instead of numeric arrays."""
    return {"x": [[1.0], [2.0]], "y": np.array([None, 1], dtype=object)}
