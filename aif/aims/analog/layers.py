"""Models from their layer list: torch and aihwkit layers with every size inferred.

A model spec says which layers, not how wide their inputs are: :func:`layer_step` follows
the sample shape through the layers, so ``in_features``, ``in_channels`` and
``num_features`` come from the data, and a layer that cannot take what the layer before
gives (a Linear on an image, a kernel bigger than its input) is a problem at
``model.layers.<i>`` that says the actual shape and the fix. The nested blocks and
sequence layers are built by :mod:`aif.aims.analog.layer_blocks`; their inner layers
are ``model.layers.<i>.layers.<j>`` and take the RPU configuration ``rpu.layers``
gives their dotted name ``<i>.<j>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from aif.aims.analog import spec as s
from aif.aims.analog.aihwkit_names import describe, family_of_class
from aif.aims.analog.rpu_layers import chooser, unmatched
from aif.aims.analog.spec_values import MAX_LAYER_WEIGHTS
from aif.errors import ExperimentError

Problem = tuple[str, str]
Shape = tuple[int, ...]


def build_model(
    spec: s.ModelSpec,
    rpu_config: Any,
    sample_shape: tuple[int, ...],
    path: str = "model",
    rpu_path: str = "rpu",
) -> torch.nn.Module:
    """An ``AnalogSequential`` of the layers in ``spec``, sizes inferred from ``sample_shape``.

    Shape faults are problems at ``<path>.layers.<i>`` saying the actual shape and the
    fix; a layer aihwkit refuses to build with ``rpu_config`` is a problem at ``rpu_path``.
    """
    from aihwkit.nn import AnalogSequential

    if spec.layers is None:
        raise ValueError("build_model builds layer lists; zoo and torch models: torch_models")
    problems: list[Problem] = []
    modules: list[torch.nn.Module] = []
    # (aihwkit's reason, the config's family) -> the layers it refused
    refused: dict[tuple[str, str], list[str]] = {}
    shape: Shape | None = tuple(sample_shape)
    choose = chooser(rpu_config)  # per-layer configurations by dotted layer name
    analog = spec.analog_names()
    problems += unmatched(rpu_config, analog, rpu_path)

    def pick(name: str) -> Any:
        return choose(name) if name in analog else None

    for i, layer in enumerate(spec.layers):
        where = f"{path}.layers.{i}"
        shape, factory = layer_step(layer, shape, where, problems)
        if factory is None:
            continue
        block = isinstance(layer, s.Sequential | s.Residual)
        config = choose(str(i)) if block else pick(str(i))
        try:
            modules.append(factory((lambda n, i=i: pick(f"{i}.{n}")) if block else config))
        except Exception as exc:  # aihwkit refuses this configuration for this tile
            refused.setdefault((describe(exc), family_of_class(type(config))), []).append(where)
    for (reason, family), layers in refused.items():
        problems.append(
            (rpu_path, f"aihwkit cannot build {', '.join(layers)} as {family}: {reason}")
        )
    if problems:
        raise ExperimentError("the model cannot be built as written", problems)
    model: torch.nn.Module = AnalogSequential(*modules)
    return model


Factory = Callable[[Any], torch.nn.Module]


def layer_step(
    layer: Any, shape: Shape | None, where: str, problems: list[Problem]
) -> tuple[Shape | None, Factory | None]:
    """The shape after ``layer`` and how to build it (``None``: unknown, not buildable).

    Problems go to ``problems``; ``shape`` ``None`` means unknown (an earlier fault).
    """
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    if isinstance(layer, s.Linear):
        if shape is not None and len(shape) != 1:
            problems.append((where, f"Linear gets {shape_text(shape)}; add Flatten before it"))
        n = math.prod(shape) if shape is not None else layer.in_features
        _check_given(layer.in_features, n, f"{where}.in_features", problems)
        if n is None:
            return None, None
        out, bias = layer.out_features, layer.bias
        if _too_many_weights(n * out, f"{where}.out_features", f"{n}x{out}", problems):
            return None, None

        n_in = n

        def linear(rpu: Any) -> torch.nn.Module:
            if rpu is None:
                return torch.nn.Linear(n_in, out, bias=bias)
            module: torch.nn.Module = AnalogLinear(n_in, out, bias=bias, rpu_config=rpu)
            return module

        return (out,), linear
    if isinstance(layer, s.Conv2d):
        image = _image(shape, layer.type, where, problems)
        if image is None:
            return None, None
        c = image[0]
        _check_given(layer.in_channels, c, f"{where}.in_channels", problems)
        k, st, p, out = layer.kernel_size, layer.stride, layer.padding, layer.out_channels
        if _too_many_weights(
            c * out * k * k, f"{where}.out_channels", f"{c}x{out}x{k}x{k}", problems
        ):
            return None, None
        size = _window(image, k, st, p, where, problems)
        bias = layer.bias

        def conv(rpu: Any) -> torch.nn.Module:
            if rpu is None:
                return torch.nn.Conv2d(c, out, k, stride=st, padding=p, bias=bias)
            module: torch.nn.Module = AnalogConv2d(
                c, out, k, stride=st, padding=p, bias=bias, rpu_config=rpu
            )
            return module

        return ((out, *size) if size else None), conv
    if isinstance(layer, s.MaxPool2d | s.AvgPool2d):
        image = _image(shape, layer.type, where, problems)
        k, st, p = layer.kernel_size, layer.stride or layer.kernel_size, layer.padding
        if p * 2 > k:
            problems.append(
                (f"{where}.padding", f"is {p}; it may be at most half of kernel_size {k}")
            )
            return None, None
        size = _window(image, k, st, p, where, problems) if image is not None else None
        pool = torch.nn.MaxPool2d if isinstance(layer, s.MaxPool2d) else torch.nn.AvgPool2d
        after = (image[0], *size) if image is not None and size else None
        return after, lambda _: pool(k, stride=st, padding=p)
    if isinstance(layer, s.BatchNorm1d | s.BatchNorm2d):
        two_d = isinstance(layer, s.BatchNorm2d)
        if shape is not None and len(shape) != (3 if two_d else 1):
            fix = "use BatchNorm1d after Flatten" if two_d else "use BatchNorm2d on images"
            problems.append((where, f"{layer.type} gets {shape_text(shape)}; {fix}"))
            return shape, None
        n = shape[0] if shape is not None else layer.num_features
        _check_given(layer.num_features, n, f"{where}.num_features", problems)
        if n is None:
            return None, None
        norm = torch.nn.BatchNorm2d if two_d else torch.nn.BatchNorm1d
        return shape, lambda _: norm(n)
    if isinstance(layer, s.Flatten):
        return ((math.prod(shape),) if shape is not None else None), lambda _: torch.nn.Flatten()
    if type(layer).__name__ not in _BASIC:
        from aif.aims.analog.layer_blocks import block_step

        return block_step(layer, shape, where, problems, layer_step)
    simple: dict[type, Factory] = {
        s.Dropout: lambda _: torch.nn.Dropout(layer.p),
        s.ReLU: lambda _: torch.nn.ReLU(),
        s.Tanh: lambda _: torch.nn.Tanh(),
        s.Sigmoid: lambda _: torch.nn.Sigmoid(),
        s.LogSoftmax: lambda _: torch.nn.LogSoftmax(dim=1),
    }
    return shape, simple[type(layer)]


#: The layer types built here; the others: :mod:`aif.aims.analog.layer_blocks`.
_BASIC = ("Dropout", "ReLU", "Tanh", "Sigmoid", "LogSoftmax")


def shape_text(shape: Shape) -> str:
    """``64 features``, ``a 4x16 sequence`` or ``a 1x8x8 (channels x height x width) image``."""
    if len(shape) == 1:
        return f"{shape[0]} features"
    if len(shape) == 2:
        return f"a {shape[0]}x{shape[1]} sequence"
    return f"a {'x'.join(map(str, shape))} (channels x height x width) image"


def _too_many_weights(count: int, where: str, shape: str, problems: list[Problem]) -> bool:
    """Refuse a layer too big to allocate, from its shape, before anything is built."""
    if count <= MAX_LAYER_WEIGHTS:
        return False
    problems.append(
        (
            where,
            f"the layer would hold {count:,} weights ({shape}), over the limit of "
            f"{MAX_LAYER_WEIGHTS:,}; make it narrower or its input smaller",
        )
    )
    return True


def _check_given(
    given: int | None, actual: int | None, where: str, problems: list[Problem]
) -> None:
    if given is not None and actual is not None and given != actual:
        problems.append(
            (where, f"is {given} but the layer before gives {actual}; set {actual} or leave it out")
        )


def _image(shape: Shape | None, kind: str, where: str, problems: list[Problem]) -> Shape | None:
    if shape is not None and len(shape) != 3:
        problems.append(
            (where, f"{kind} needs an image but gets {shape_text(shape)}; move Flatten after it")
        )
        return None
    return shape


def _window(
    image: Shape, k: int, stride: int, padding: int, where: str, problems: list[Problem]
) -> tuple[int, int] | None:
    """Height and width after a ``k`` x ``k`` window, or a problem if it does not fit."""
    h, w = image[1] + 2 * padding, image[2] + 2 * padding
    if k > h or k > w:
        problems.append(
            (
                f"{where}.kernel_size",
                f"is {k} but its input is {shape_text(image)}"
                f"{f' ({h}x{w} padded)' if padding else ''}; use a smaller kernel_size, more "
                "padding or fewer pooling layers before it",
            )
        )
        return None
    return (h - k) // stride + 1, (w - k) // stride + 1
