"""Trained weights as bytes that hold tensors only, so loading them runs no code.

aihwkit's own ``state_dict`` carries the RPU configuration and tile state as Python
objects, which only a full unpickle (``torch.load(weights_only=False)``) can read, and
unpickling runs whatever the file says. A checkpoint here is a flat ``dict[str, Tensor]``
written with ``torch.save`` and read back with ``torch.load(weights_only=True)``:

* ``<layer>.weight`` / ``<layer>.bias`` for each analog layer: the *logical* weights
  from ``get_weights()`` (digital output scales folded in), written back with
  ``set_weights()``, which maps them onto the new model's tiles as its own RPU
  configuration says. A checkpoint thus moves between configurations of the same
  shape (train on one, test on another).
* ``<tile>.input_range`` for tiles with a (learned) input range: kept when both sides
  have one, ignored otherwise, as it belongs to the configuration rather than the net.
* ``<module>.<name>`` for the parameters and persistent buffers of every digital
  module (``BatchNorm`` running statistics included).

Drift state (programmed weights, compensation ``alpha``) is left out: it is redrawn
whenever weights are programmed. Load into a freshly built model. Pulsed devices
(``SingleRPUConfig`` with e.g. ``ConstantStepDevice``) draw their device-to-device
variation when a tile is built, so a new model has other devices: ``set_weights``
clips each weight to its new device's bounds, unless both models were built with the
same nonzero ``construction_seed``.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from aif.errors import ExperimentError

_OPTIONAL = ".input_range"
_HINT = "was the checkpoint saved from the same model?"


def weights_dict(model: Any) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint of ``model`` holds, on CPU, by key (see module doc)."""
    out: dict[str, torch.Tensor] = {}
    analog = _analog_layers(model)
    for name, layer in analog.items():
        weight, bias = layer.get_weights()
        out[_key(name, "weight")] = weight
        if bias is not None:
            out[_key(name, "bias")] = bias
        for tile_name, tile in layer.named_analog_tiles():
            input_range = getattr(tile, "input_range", None)
            if input_range is not None:
                out[_key(_key(name, tile_name), "input_range")] = input_range
    for name, tensor in _digital_tensors(model, analog).items():
        out[name] = tensor
    return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}


def digital_weights(model: Any) -> dict[str, torch.Tensor]:
    """The weights a digital model of the same layers holds, by its state-dict key.

    What a deployment target (the IMC chip driver) needs: each analog layer's logical
    weights shaped as its digital twin's parameter (an analog ``Conv2d`` keeps them as
    ``out x in*kh*kw``), digital modules as they are, input ranges left out.
    """
    analog = _analog_layers(model)
    out = {k: v for k, v in weights_dict(model).items() if not k.endswith(_OPTIONAL)}
    for name, layer in analog.items():
        key = _key(name, "weight")
        out[key] = out[key].reshape(_digital_weight_shape(layer, out[key]))
    return out


def _digital_weight_shape(layer: Any, weight: torch.Tensor) -> tuple[int, ...]:
    kernel = getattr(layer, "kernel_size", None)
    if kernel is None:
        return tuple(weight.shape)
    groups = int(getattr(layer, "groups", 1))
    return (int(layer.out_channels), int(layer.in_channels) // groups, *(int(k) for k in kernel))


def save_weights(model: Any, float32: bool = False) -> bytes:
    """The model's weights as ``torch.save`` bytes of a ``dict[str, Tensor]``;
    ``float32``: floating-point tensors of a half-precision model as float32."""
    tensors = weights_dict(model)
    if float32:
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def load_weights(model: Any, data: bytes) -> None:
    """Put weights saved by :func:`save_weights` into ``model``.

    Everything is checked before anything is written, so on an error the model is
    unchanged. Raises :class:`ExperimentError` at ``load_checkpoint`` for bytes that
    are not a tensor checkpoint, and one problem per missing key, unexpected key or
    wrong shape.
    """
    try:
        loaded = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise ExperimentError(
            "the checkpoint does not load",
            [("load_checkpoint", f"not a weights checkpoint written by aif ({exc})")],
        ) from exc
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ExperimentError(
            "the checkpoint does not load",
            [("load_checkpoint", "expected a mapping of names to tensors")],
        )
    expected = weights_dict(model)
    problems = _compare(expected, loaded)
    if problems:
        raise ExperimentError(f"the checkpoint does not fit the model: {_HINT}", problems)
    _apply(model, loaded)


def _compare(
    expected: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor]
) -> list[tuple[str, str]]:
    problems = []
    for key, tensor in expected.items():
        if key not in loaded:
            if not key.endswith(_OPTIONAL):
                problems.append(("load_checkpoint", f"{key}: missing from the checkpoint"))
        elif loaded[key].shape != tensor.shape:
            problems.append(
                (
                    "load_checkpoint",
                    f"{key}: the checkpoint has shape {list(loaded[key].shape)}, "
                    f"the model {list(tensor.shape)}",
                )
            )
    for key in loaded:
        if key not in expected and not key.endswith(_OPTIONAL):
            problems.append(("load_checkpoint", f"{key}: in the checkpoint but not in the model"))
    return problems


@torch.no_grad()
def _apply(model: Any, loaded: dict[str, torch.Tensor]) -> None:
    analog = _analog_layers(model)
    for name, layer in analog.items():
        for tile_name, tile in layer.named_analog_tiles():
            # get_weights() folded the learned output scales into the weights.
            if getattr(tile, "out_scaling_alpha", None) is not None:
                tile.set_learned_out_scales(1.0)
            input_range = getattr(tile, "input_range", None)
            key = _key(_key(name, tile_name), "input_range")
            if input_range is not None and key in loaded:
                input_range.copy_(loaded[key])
        layer.set_weights(loaded[_key(name, "weight")], loaded.get(_key(name, "bias")))
    for key, tensor in _digital_tensors(model, analog).items():
        tensor.copy_(loaded[key])


def _analog_layers(model: Any) -> dict[str, Any]:
    """Analog layers by module name (the model itself, if it is one, under ``""``)."""
    from aihwkit.nn.modules.base import AnalogLayerBase

    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, AnalogLayerBase) and not module.IS_CONTAINER
    }


def _digital_tensors(model: Any, analog: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of the modules outside analog layers."""
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if any(name == a or name.startswith(a + ".") or a == "" for a in analog):
            continue
        skip: set[str] = getattr(module, "_non_persistent_buffers_set", set())
        for pname, param in module.named_parameters(recurse=False):
            out[_key(name, pname)] = param.data
        for bname, buffer in module.named_buffers(recurse=False):
            if buffer is not None and bname not in skip:
                out[_key(name, bname)] = buffer
    return out


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
