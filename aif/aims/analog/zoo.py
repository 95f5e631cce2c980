"""Built-in torch models with the architectures of aihwkit's examples and tutorials.

``model: {zoo: NAME, args: {...}}`` builds one of these as a plain digital torch
model; :mod:`aif.aims.analog.torch_models` then converts it with aihwkit's
``convert_to_analog``, exactly as it converts a user's own torch model. Every factory
takes the sample shape (``(channels, height, width)`` for images) and the number of
classes from the data set, so ``args`` holds only the architecture's choices;
``classes`` may be given to have it checked.

=========  =================================================================================
``mlp``    Flatten, then Linear + activation per ``hidden`` size, then Linear to the classes
           (aihwkit example 1 and the tutorials' MNIST MLP: ``hidden: [256, 128]``)
``lenet5`` Conv(16, 5x5) tanh pool, Conv(32, 5x5) tanh pool, Linear(128) tanh, Linear
           (aihwkit example 3; padding 2 keeps the 5x5 kernels usable on small images)
``vgg8``   3 blocks of two 3x3 Conv + BatchNorm + ReLU (48, 96, 144 channels times
           ``width / 48``) and a 2x2 max pool each, then Linear(384) ReLU Linear
           (aihwkit example 7 on CIFAR-10; needs images of at least 8x8)
``resnet`` CIFAR-style ResNet-20/32/56 (He et al. 2016): 3x3 stem, three stages of
           ``(depth - 2) / 6`` basic blocks with ``width``, 2 ``width`` and 4 ``width``
           channels, global average pool, Linear; ``shortcut: A`` (subsample and pad
           channels, no weights) or ``B`` (1x1 Conv + BatchNorm projections)
``lstm``   each image row is one time step (``channels x width`` features), optionally
           projected to ``embed`` features by a Linear; ``layers`` LSTM layers of
           ``hidden`` units; the last step's output to a Linear (aihwkit example 13's
           LSTM). Built from aihwkit's ``AnalogRNN`` with ``AnalogLSTMCell`` and digital
           gates, which ``convert_to_analog`` turns into ``AnalogLinear`` tiles (aihwkit
           1.2.0 has no conversion of ``torch.nn.LSTM``)
=========  =================================================================================

Arguments are pydantic models (unknown fields rejected, ranges checked);
:func:`zoo_problems` returns their faults at ``model.args.<field>``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any, Literal

import pydantic
import torch
from pydantic import Field

Problem = tuple[str, str]
Shape = tuple[int, ...]

_FORBID = pydantic.ConfigDict(extra="forbid")


class _Args(pydantic.BaseModel):
    model_config = _FORBID
    classes: int | None = Field(
        default=None, ge=2, le=100_000, description="inferred from the data; give it to check it"
    )


class MLPArgs(_Args):
    """``mlp``: a multi-layer perceptron."""

    hidden: list[int] = Field(
        default_factory=lambda: [256, 128],
        max_length=16,
        description="the width of each hidden layer, first first; [] is a linear model",
    )
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"

    @pydantic.field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int]) -> list[int]:
        if any(not 1 <= w <= 100_000 for w in value):
            raise ValueError(f"each hidden width must be in [1, 100000], got {value}")
        return value


class LeNet5Args(_Args):
    """``lenet5``: two convolutions and two fully connected layers."""

    channels: list[int] = Field(
        default_factory=lambda: [16, 32],
        min_length=2,
        max_length=2,
        description="the output channels of the two convolutions",
    )
    hidden: int = Field(default=128, ge=1, le=100_000, description="the hidden Linear's width")


class VGG8Args(_Args):
    """``vgg8``: six convolutions in three blocks and two fully connected layers."""

    width: int = Field(
        default=48, ge=1, le=1024, description="channels of the first block (then 2x, 3x)"
    )
    hidden: int = Field(default=384, ge=1, le=100_000, description="the hidden Linear's width")


class ResNetArgs(_Args):
    """``resnet``: a CIFAR-style residual network."""

    depth: Literal[20, 32, 56] = Field(default=20, description="20, 32 or 56 layers")
    width: int = Field(default=16, ge=1, le=1024, description="channels of the first stage")
    shortcut: Literal["A", "B"] = Field(
        default="A", description="A: subsample and pad with zeros; B: 1x1 Conv projection"
    )


class LSTMArgs(_Args):
    """``lstm``: image rows as a sequence through LSTM layers, then a Linear."""

    hidden: int = Field(default=64, ge=1, le=8192, description="units of each LSTM layer")
    layers: int = Field(default=1, ge=1, le=8, description="stacked LSTM layers")
    embed: int | None = Field(
        default=None, ge=1, le=8192, description="project each row to this many features first"
    )
    dropout: float = Field(default=0.0, ge=0, lt=1, description="between LSTM layers")


# -- the architectures ------------------------------------------------------------------------


def _activation(name: str) -> torch.nn.Module:
    kinds: dict[str, type[torch.nn.Module]] = {
        "relu": torch.nn.ReLU,
        "tanh": torch.nn.Tanh,
        "sigmoid": torch.nn.Sigmoid,
    }
    return kinds[name]()


def _image(shape: Shape, name: str, side: int) -> tuple[int, int, int]:
    """``shape`` as ``(channels, height, width)`` of at least ``side`` pixels, or ValueError."""
    if len(shape) != 3:
        got = "x".join(map(str, shape))
        raise ValueError(f"{name} needs images (channels x height x width), not samples of {got}")
    c, h, w = shape
    if h < side or w < side:
        raise ValueError(f"{name} needs images of at least {side}x{side}, not {h}x{w}")
    return c, h, w


def mlp(args: MLPArgs, shape: Shape, classes: int) -> torch.nn.Module:
    """Flatten, ``Linear`` + activation per hidden width, ``Linear`` to the classes."""
    layers: list[torch.nn.Module] = [torch.nn.Flatten()]
    width = math.prod(shape)
    for out in args.hidden:
        layers += [torch.nn.Linear(width, out), _activation(args.activation)]
        width = out
    layers.append(torch.nn.Linear(width, classes))
    return torch.nn.Sequential(*layers)


def lenet5(args: LeNet5Args, shape: Shape, classes: int) -> torch.nn.Module:
    """aihwkit's LeNet-5: two 5x5 convolutions with tanh and pooling, two Linears."""
    c1, c2 = args.channels
    c, h, w = _image(shape, "lenet5", 4)
    side_h, side_w = h // 4, w // 4
    return torch.nn.Sequential(
        torch.nn.Conv2d(c, c1, 5, padding=2),
        torch.nn.Tanh(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(c1, c2, 5, padding=2),
        torch.nn.Tanh(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(c2 * side_h * side_w, args.hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(args.hidden, classes),
    )


def vgg8(args: VGG8Args, shape: Shape, classes: int) -> torch.nn.Module:
    """aihwkit's VGG-8: three blocks of two 3x3 convolutions, two Linears."""
    channels, h, w = _image(shape, "vgg8", 8)
    side_h, side_w = h // 8, w // 8
    layers: list[torch.nn.Module] = []
    for block in (1, 2, 3):
        out = args.width * block
        for _ in range(2):
            layers += [
                torch.nn.Conv2d(channels, out, 3, padding=1),
                torch.nn.BatchNorm2d(out),
                torch.nn.ReLU(),
            ]
            channels = out
        layers.append(torch.nn.MaxPool2d(2))
    layers += [
        torch.nn.Flatten(),
        torch.nn.Linear(channels * side_h * side_w, args.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, classes),
    ]
    return torch.nn.Sequential(*layers)


class PadShortcut(torch.nn.Module):
    """Option A: take every ``stride``-th pixel and pad the new channels with zeros."""

    def __init__(self, stride: int, extra: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return torch.nn.functional.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(torch.nn.Module):
    """Two 3x3 convolutions with BatchNorm, added to the (shortcut) input, then ReLU."""

    def __init__(self, into: int, out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(into, out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(out)
        self.conv2 = torch.nn.Conv2d(out, out, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(out)
        self.shortcut: torch.nn.Module = torch.nn.Identity()
        if stride != 1 or into != out:
            if shortcut == "A":
                self.shortcut = PadShortcut(stride, out - into)
            else:
                self.shortcut = torch.nn.Sequential(
                    torch.nn.Conv2d(into, out, 1, stride=stride, bias=False),
                    torch.nn.BatchNorm2d(out),
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet(torch.nn.Module):
    """The CIFAR ResNet of He et al. (2016), section 4.2."""

    def __init__(self, args: ResNetArgs, shape: Shape, classes: int) -> None:
        super().__init__()
        blocks, w = (args.depth - 2) // 6, args.width
        channels, _, _ = _image(shape, "resnet", 1)
        self.conv = torch.nn.Conv2d(channels, w, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(w)
        stages: list[torch.nn.Module] = []
        into = w
        for stage, out in enumerate((w, 2 * w, 4 * w)):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                stages.append(BasicBlock(into, out, stride, args.shortcut))
                into = out
        self.stages = torch.nn.Sequential(*stages)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(torch.relu(self.bn(self.conv(x))))
        out: torch.Tensor = self.fc(torch.flatten(self.pool(x), 1))
        return out


def resnet(args: ResNetArgs, shape: Shape, classes: int) -> torch.nn.Module:
    """ResNet-20, -32 or -56 for small images."""
    return ResNet(args, shape, classes)


class LSTMClassifier(torch.nn.Module):
    """Sequences through LSTM layers, a Linear on the last step's output.

    Samples of ``(time, features)`` are sequences; images ``(channels, height, width)``
    are read row by row, ``channels x width`` features a step.
    """

    def __init__(self, args: LSTMArgs, shape: Shape, classes: int) -> None:
        from aihwkit.nn import AnalogLSTMCell, AnalogRNN

        super().__init__()
        if len(shape) not in (2, 3):
            got = "x".join(map(str, shape))
            raise ValueError(
                f"lstm needs sequences (time x features) or images, not samples of {got}"
            )
        features = shape[0] * shape[2] if len(shape) == 3 else shape[1]
        self.embed: torch.nn.Module = torch.nn.Identity()
        if args.embed is not None:
            self.embed = torch.nn.Linear(features, args.embed)
            features = args.embed
        # rpu_config None: digital gate Linears, which convert_to_analog makes analog
        self.lstm = AnalogRNN(
            AnalogLSTMCell,
            features,
            args.hidden,
            num_layers=args.layers,
            dropout=args.dropout,
        )
        self.fc = torch.nn.Linear(args.hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # images: rows are the time steps
            n, c, h, w = x.shape
            x = x.permute(0, 2, 1, 3).reshape(n, h, c * w)
        steps = x.transpose(0, 1)  # (time, batch, features), as AnalogRNN reads them
        output, _ = self.lstm(self.embed(steps))
        out: torch.Tensor = self.fc(output[-1])
        return out


def lstm(args: LSTMArgs, shape: Shape, classes: int) -> torch.nn.Module:
    """An LSTM classifier that reads an image row by row."""
    return LSTMClassifier(args, shape, classes)


Factory = Callable[[Any, Shape, int], torch.nn.Module]

#: Zoo name -> (argument model, factory).
ZOO: dict[str, tuple[type[_Args], Factory]] = {
    "lenet5": (LeNet5Args, lenet5),
    "lstm": (LSTMArgs, lstm),
    "mlp": (MLPArgs, mlp),
    "resnet": (ResNetArgs, resnet),
    "vgg8": (VGG8Args, vgg8),
}
#: The names ``model.zoo`` takes.
ZOO_NAMES = tuple(sorted(ZOO))


def zoo_problems(name: str, args: dict[str, Any], path: str = "model") -> list[Problem]:
    """What is wrong with ``zoo: name`` and its ``args`` (an unknown name lists the valid)."""
    if name not in ZOO:
        close = difflib.get_close_matches(name, ZOO_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return [(f"{path}.zoo", f"no zoo model {name!r}{hint} (valid: {', '.join(ZOO_NAMES)})")]
    schema = ZOO[name][0]
    try:
        schema.model_validate(args)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            where = f"{path}.args.{loc}" if loc else f"{path}.args"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                valid = ", ".join(schema.model_fields)
                msg = f"{name} takes no argument {loc!r} (valid: {valid})"
            elif "input" in err and err["type"] not in ("missing",):
                msg = f"{msg}, got {err['input']!r}"
            problems.append((where, msg))
        return problems
    return []


def build_zoo_model(
    name: str, args: dict[str, Any], shape: Shape, classes: int, path: str = "model"
) -> torch.nn.Module:
    """The digital zoo model ``name`` for samples of ``shape`` and ``classes`` classes.

    Raises ``ValueError`` with :func:`zoo_problems`' findings joined, or the factory's
    own refusal (an image too small for its pooling).
    """
    problems = zoo_problems(name, args, path)
    if problems:
        raise ValueError("; ".join(f"{p}: {m}" for p, m in problems))
    schema, factory = ZOO[name]
    return factory(schema.model_validate(args), shape, classes)
