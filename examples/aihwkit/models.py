"""Torch models of aihwkit's examples that aif's layer list and zoo do not build.

Written for aif (not copied from aihwkit): each is a plain ``torch.nn.Module`` that aif
converts with ``convert_to_analog``, referenced from an experiment as
``model: {torch: examples.aihwkit.models:NAME}`` (run from the repository root).
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; a 1x1 convolution on the skip path if asked."""

    def __init__(self, in_ch: int, out_ch: int, *, project: bool = False, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.convskip = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = self.convskip(x) if self.convskip is not None else x
        return torch.relu(y + skip)


def _stage(in_ch: int, out_ch: int, blocks: int, *, first: bool) -> nn.Sequential:
    layers = [
        ResidualBlock(in_ch, out_ch, project=not first, stride=1 if first else 2)
        if i == 0
        else ResidualBlock(out_ch, out_ch)
        for i in range(blocks)
    ]
    return nn.Sequential(*layers)


def example18_resnet(
    blocks: tuple[int, int, int] = (3, 4, 6), width: int = 16, classes: int = 10
) -> nn.Sequential:
    """Example 18's "ResNet34-inspired" CIFAR-10 network.

    A 3x3 stem, three stages of residual blocks (``width``, 2x, 4x channels; the first
    block of stages two and three halves the image and projects the skip path), global
    average pooling and a Linear. The example lists a fourth stage size that it never
    uses; so does this.
    """
    channels = (width, 2 * width, 4 * width)
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, channels[0], kernel_size=3, padding=1),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        ),
        _stage(channels[0], channels[0], blocks[0], first=True),
        _stage(channels[0], channels[1], blocks[1], first=False),
        _stage(channels[1], channels[2], blocks[2], first=False),
        nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(channels[2], classes)),
    )


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch, momentum=0.9),
        nn.ReLU(),
    ]


class _PlainBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity skip (same channels, stride 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class Example30ResNet9(nn.Module):
    """Example 30's ResNet-9s for CIFAR-10, with the same module names as its checkpoint.

    A 3x3 stem and three stages (``channels`` wide, the second and third halving the
    image with a max pool), an identity residual block after the first and the last,
    a 4x4 max pool and a Linear. The names (``conv.N``, ``bn1``...``bn4``, ``fc``) are
    the ones the example's ``resnet9s.th`` uses, so its state dict loads once
    converted to ``.safetensors`` (see ``30-external-hardware-aware-model.yaml``).
    """

    def __init__(self, channels: tuple[int, int, int, int] = (28, 28, 28, 56)) -> None:
        super().__init__()
        self.channels = channels
        widths = zip((3, *channels[:3]), channels, strict=True)
        stem, first, second, third = (_conv_bn_relu(a, b) for a, b in widths)
        # the BatchNorms are also attributes, as in the checkpoint (bn1.* beside conv.1.*)
        self.bn1, self.bn2, self.bn3, self.bn4 = stem[1], first[1], second[1], third[1]
        self.conv = nn.Sequential(
            *stem,
            *first,
            nn.MaxPool2d(2),
            _PlainBlock(channels[1]),
            *second,
            nn.MaxPool2d(2),
            *third,
            nn.MaxPool2d(2),
            _PlainBlock(channels[3]),
            nn.MaxPool2d(4),
        )
        self.fc = nn.Linear(channels[3], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))
