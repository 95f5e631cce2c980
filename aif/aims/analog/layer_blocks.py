"""The layers of :mod:`aif.aims.analog.model_blocks` and the nested ``Sequential`` and
``Residual``, built with their shapes followed (the rest of :mod:`aif.aims.analog.layers`).

:func:`block_step` is ``layer_step`` for these types: the shape after the layer and a
factory, or a problem at ``where`` that names the shape and the fix. A weighted layer's
factory takes its aihwkit configuration (``None``: digital); a ``Sequential`` or
``Residual`` factory takes a :data:`Pick`, ``inner name -> configuration or None``
(``None`` for the whole block: all digital), inner names being dotted (``1``, ``2.0``,
``shortcut``) as ``rpu: {layers: ...}`` patterns match them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from aif.aims.analog import spec as s

Problem = tuple[str, str]
Shape = tuple[int, ...]
Factory = Callable[[Any], torch.nn.Module]
#: Inner layer name -> its aihwkit configuration, ``None`` for a digital layer.
Pick = Callable[[str], Any]
Step = Callable[[Any, Shape | None, str, list[Problem]], tuple[Shape | None, Factory | None]]


class Tokens(torch.nn.Module):
    """An ``Embedding`` fed integer tokens that the data loader may hand over as floats."""

    def __init__(self, count: int, dim: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(count, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.embedding(x.long())
        return out


class Recurrent(torch.nn.Module):
    """A recurrent layer on ``(batch, time, features)``: the last step's output or all.

    ``analog``: ``rnn`` is aihwkit's ``AnalogRNN``, which reads ``(time, batch, ...)``;
    otherwise a torch ``LSTM``, ``GRU`` or ``RNN`` built with ``batch_first``.
    """

    def __init__(self, rnn: torch.nn.Module, analog: bool, last: bool) -> None:
        super().__init__()
        self.rnn, self.analog, self.last = rnn, analog, last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.analog:
            out, _ = self.rnn(x.transpose(0, 1))
            out = out.transpose(0, 1)
        else:
            out, _ = self.rnn(x)
        result: torch.Tensor = out[:, -1] if self.last else out
        return result


class ResidualBlock(torch.nn.Module):
    """``body(x) + shortcut(x)``."""

    def __init__(self, body: torch.nn.Module, shortcut: torch.nn.Module) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x) + self.shortcut(x)
        return out


def block_step(
    layer: Any, shape: Shape | None, where: str, problems: list[Problem], step: Step
) -> tuple[Shape | None, Factory | None]:
    """``layer_step`` for the layer types of this module (``step``: the whole ``layer_step``)."""
    if isinstance(layer, s.Sequential | s.Residual):
        return _block(layer, shape, where, problems, step)
    if isinstance(layer, s.Conv1d):
        return _conv1d(layer, shape, where, problems)
    if isinstance(layer, s.MaxPool1d | s.AvgPool1d):
        return _pool1d(layer, shape, where, problems)
    if isinstance(layer, s.AdaptiveAvgPool2d):
        size = layer.output_size
        if shape is not None and len(shape) != 3:
            problems.append((where, f"{layer.type} needs an image but gets {_text(shape)}"))
            return None, None
        after = (shape[0], size, size) if shape is not None else None
        return after, lambda _: torch.nn.AdaptiveAvgPool2d(size)
    if isinstance(layer, s.Embedding):
        if shape is not None and len(shape) != 1:
            problems.append(
                (
                    where,
                    f"Embedding reads a sequence of integer tokens but gets {_text(shape)}; "
                    "put it first, on a data set of tokens",
                )
            )
            return None, None
        count, dim = layer.num_embeddings, layer.embedding_dim
        return ((shape[0], dim) if shape is not None else None), lambda _: Tokens(count, dim)
    if isinstance(layer, s.LSTM | s.GRU | s.RNN):
        return _recurrent(layer, shape, where, problems)
    simple: dict[type, Factory] = {
        s.GELU: lambda _: torch.nn.GELU(),
        s.ELU: lambda _: torch.nn.ELU(alpha=layer.alpha),
        s.LeakyReLU: lambda _: torch.nn.LeakyReLU(layer.negative_slope),
    }
    return shape, simple[type(layer)]


def _text(shape: Shape) -> str:
    from aif.aims.analog.layers import shape_text

    return shape_text(shape)


def _block(
    layer: s.Sequential | s.Residual,
    shape: Shape | None,
    where: str,
    problems: list[Problem],
    step: Step,
) -> tuple[Shape | None, Factory | None]:
    from aihwkit.nn import AnalogSequential

    parts: list[tuple[bool, Factory | None]] = []
    after = shape
    for j, inner in enumerate(layer.layers):
        after, factory = step(inner, after, f"{where}.layers.{j}", problems)
        parts.append((isinstance(inner, s.Sequential | s.Residual), factory))
    if any(factory is None for _, factory in parts):
        return after, None
    shortcut: Factory = lambda _: torch.nn.Identity()  # noqa: E731
    if isinstance(layer, s.Residual) and shape is not None and after is not None:
        if layer.shortcut == "projection":
            projection = _projection(shape, after, where, problems)
            if projection is None:
                return after, None
            shortcut = projection
        elif after != shape:
            problems.append(
                (
                    where,
                    f"the Residual block's layers turn {_text(shape)} into {_text(after)}, "
                    "which cannot be added to its input; set 'shortcut: projection'",
                )
            )
            return after, None

    def build(pick: Pick | None) -> torch.nn.Module:
        modules = []
        for j, (nested, factory) in enumerate(parts):
            assert factory is not None
            if pick is None:
                modules.append(factory(None))
            elif nested:
                modules.append(factory(lambda name, j=j: pick(f"{j}.{name}")))
            else:
                modules.append(factory(pick(str(j))))
        body: torch.nn.Module = AnalogSequential(*modules)
        if isinstance(layer, s.Sequential):
            return body
        return ResidualBlock(body, shortcut(None if pick is None else pick("shortcut")))

    return after, build


def _projection(before: Shape, after: Shape, where: str, problems: list[Problem]) -> Factory | None:
    """A 1x1 convolution (a Linear on features) from ``before`` to ``after``, if one fits."""
    from aihwkit.nn import AnalogConv1d, AnalogConv2d, AnalogLinear

    strides = [math.ceil(b / a) for b, a in zip(before[1:], after[1:], strict=False)]
    fits = len(before) == len(after) and all(
        (b - 1) // st + 1 == a for b, a, st in zip(before[1:], after[1:], strides, strict=True)
    )
    if not fits or (len(strides) > 1 and len(set(strides)) > 1):
        problems.append(
            (
                f"{where}.shortcut",
                f"no 1x1 projection turns {_text(before)} into {_text(after)}; make the "
                "block's layers keep the shape kind and shrink each side by the same stride",
            )
        )
        return None
    c_in, c_out, st = before[0], after[0], strides[0] if strides else 1

    def project(rpu: Any) -> torch.nn.Module:
        if len(before) == 1:
            if rpu is None:
                return torch.nn.Linear(c_in, c_out)
            return AnalogLinear(c_in, c_out, rpu_config=rpu)  # type: ignore[no-any-return]
        digital = torch.nn.Conv2d if len(before) == 3 else torch.nn.Conv1d
        if rpu is None:
            return digital(c_in, c_out, 1, stride=st, bias=False)
        analog = AnalogConv2d if len(before) == 3 else AnalogConv1d
        module: torch.nn.Module = analog(c_in, c_out, 1, stride=st, bias=False, rpu_config=rpu)
        return module

    return project


def _sequence(shape: Shape | None, kind: str, where: str, problems: list[Problem]) -> bool:
    if shape is not None and len(shape) != 2:
        fix = (
            "Flatten makes features; a data set of sequences gives them"
            if len(shape) == 3
            else "give it sequences"
        )
        problems.append(
            (where, f"{kind} needs a sequence {_LAYOUT[kind]} but gets {_text(shape)}; {fix}")
        )
        return False
    return True


_LAYOUT = {
    "Conv1d": "(channels x length)",
    "MaxPool1d": "(channels x length)",
    "AvgPool1d": "(channels x length)",
    "LSTM": "(time x features)",
    "GRU": "(time x features)",
    "RNN": "(time x features)",
}


def _length(
    length: int, k: int, stride: int, padding: int, where: str, problems: list[Problem]
) -> int | None:
    padded = length + 2 * padding
    if k > padded:
        problems.append(
            (
                f"{where}.kernel_size",
                f"is {k} but its input is {length} long{f' ({padded} padded)' if padding else ''}"
                "; use a smaller kernel_size, more padding or fewer pooling layers before it",
            )
        )
        return None
    return (padded - k) // stride + 1


def _conv1d(
    layer: s.Conv1d, shape: Shape | None, where: str, problems: list[Problem]
) -> tuple[Shape | None, Factory | None]:
    from aihwkit.nn import AnalogConv1d

    if not _sequence(shape, layer.type, where, problems) or shape is None:
        return None, None
    c = shape[0]
    if layer.in_channels is not None and layer.in_channels != c:
        problems.append(
            (
                f"{where}.in_channels",
                f"is {layer.in_channels} but the layer before gives {c}; set {c} or leave it out",
            )
        )
    k, st, p, out, bias = (
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.out_channels,
        layer.bias,
    )
    length = _length(shape[1], k, st, p, where, problems)

    def conv(rpu: Any) -> torch.nn.Module:
        if rpu is None:
            return torch.nn.Conv1d(c, out, k, stride=st, padding=p, bias=bias)
        module: torch.nn.Module = AnalogConv1d(
            c, out, k, stride=st, padding=p, bias=bias, rpu_config=rpu
        )
        return module

    return ((out, length) if length is not None else None), conv


def _pool1d(
    layer: s.MaxPool1d | s.AvgPool1d, shape: Shape | None, where: str, problems: list[Problem]
) -> tuple[Shape | None, Factory | None]:
    k, st, p = layer.kernel_size, layer.stride or layer.kernel_size, layer.padding
    if p * 2 > k:
        problems.append((f"{where}.padding", f"is {p}; it may be at most half of kernel_size {k}"))
        return None, None
    if not _sequence(shape, layer.type, where, problems) or shape is None:
        return None, None
    length = _length(shape[1], k, st, p, where, problems)
    pool = torch.nn.MaxPool1d if isinstance(layer, s.MaxPool1d) else torch.nn.AvgPool1d
    return ((shape[0], length) if length is not None else None), lambda _: pool(
        k, stride=st, padding=p
    )


_CELLS = {"LSTM": "AnalogLSTMCell", "GRU": "AnalogGRUCell", "RNN": "AnalogVanillaRNNCell"}


def _recurrent(
    layer: s.LSTM | s.GRU | s.RNN, shape: Shape | None, where: str, problems: list[Problem]
) -> tuple[Shape | None, Factory | None]:
    if not _sequence(shape, layer.type, where, problems) or shape is None:
        return None, None
    features, hidden, layers, bidir = (
        shape[1],
        layer.hidden_size,
        layer.num_layers,
        layer.bidirectional,
    )
    last, bias, kind = layer.last, layer.bias, layer.type
    width = hidden * (2 if bidir else 1)

    def rnn(rpu: Any) -> torch.nn.Module:
        import aihwkit.nn

        if rpu is None:
            digital = getattr(torch.nn, kind)
            module = digital(
                features, hidden, layers, bias=bias, batch_first=True, bidirectional=bidir
            )
            return Recurrent(module, analog=False, last=last)
        cell = getattr(aihwkit.nn, _CELLS[kind])
        analog = aihwkit.nn.AnalogRNN(
            cell, features, hidden, bias=bias, rpu_config=rpu, num_layers=layers, bidir=bidir
        )
        return Recurrent(analog, analog=True, last=last)

    return ((width,) if last else (shape[0], width)), rnn
