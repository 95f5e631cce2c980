"""Torch models of a user's own, for ``model: {torch: tests.helpers.torch_models:...}``.

``TinyNet`` is a good model; the others are the mistakes the validator must refuse.
"""

from __future__ import annotations

import torch


class TinyNet(torch.nn.Module):
    """A small CNN: one convolution, a pool, a hidden Linear and a classifier Linear."""

    def __init__(self, classes: int = 10, channels: int = 1, width: int = 4, side: int = 8) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, width, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc1 = torch.nn.Linear(width * (side // 2) ** 2, 16)
        self.fc2 = torch.nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))
        out: torch.Tensor = self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))
        return out


def tiny_mlp(inputs: int, classes: int, hidden: int = 8) -> torch.nn.Module:
    """A factory function: a two-layer perceptron as a Sequential."""
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(inputs, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, classes),
    )


def refusing(hidden: int = 8) -> torch.nn.Module:
    """A factory that refuses every call."""
    raise ValueError(f"hidden must be a power of two, got {hidden}")


class NoWeights(torch.nn.Module):
    """Nothing aihwkit converts: only an LSTM (aihwkit 1.2.0 does not convert nn.LSTM)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(torch.flatten(x, 2).transpose(0, 1))
        result: torch.Tensor = out[-1]
        return result


def not_a_module() -> object:
    """A factory that returns something else than a torch module."""
    return {"layers": 3}
