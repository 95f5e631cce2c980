"""RPU configurations from their spec, and what each runs on.

An ``rpu`` section names a family or preset, then overrides by field name; this module
builds the aihwkit object and collects every problem (unknown names via
:mod:`aif.aims.analog.aihwkit_names`, values via :mod:`aif.aims.analog.overrides`).
The sections a config takes are its own dataclass fields that hold aihwkit parameters
(:func:`~aif.aims.analog.aihwkit_names.section_names`), and per-layer configurations
are attached to the base one (:mod:`aif.aims.analog.rpu_layers`).

Which simulator runs a family (aihwkit 1.2.0, read from each config's ``tile_class``):

* ``rpucuda``, the C++ RPUCuda extension: ``FloatingPointRPUConfig``
  (``FloatingPointTile``), ``InferenceRPUConfig`` (``InferenceTile``) and the training
  families ``SingleRPUConfig``, ``UnitCellRPUConfig``, ``DigitalRankUpdateRPUConfig``
  (``AnalogTile``), presets included. On CUDA they need an aihwkit compiled with CUDA
  (``aihwkit.simulator.rpu_base.cuda.is_compiled()``).
* ``torch``, plain torch ops (``TorchInferenceTile`` over ``TorchSimulatorTile``), so
  they run wherever torch does: ``TorchInferenceRPUConfig``,
  ``QuantizedTorchInferenceRPUConfig``, ``TorchInferenceRPUConfigIRDropT`` and the preset
  ``FloatingPointPreset`` (a ``TorchInferenceRPUConfig`` despite its name). They refuse
  some non-idealities (``forward.w_noise``, PCM modifier noise, analog bias) when a tile
  is built. aihwkit itself still needs its C++ extension to import.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Mapping
from typing import Any, Literal

from aif.aims.analog.aihwkit_names import (
    config_classes,
    describe,
    device_classes,
    drift_compensation_classes,
    family_classes,
    family_of_class,
    field_names,
    noise_model_classes,
    resolve,
    section_names,
    unknown,
)
from aif.aims.analog.overrides import apply_overrides, call_with, type_hints
from aif.aims.analog.rpu_layers import attach, layer_configs
from aif.aims.analog.spec import NoiseModelSpec, RPUSpec
from aif.errors import ExperimentError

Problem = tuple[str, str]


def build_rpu_config(spec: RPUSpec, path: str = "rpu") -> Any:
    """The aihwkit RPU configuration ``spec`` describes; all faults in one ExperimentError."""
    rpu, problems = rpu_config(spec, path)
    if problems:
        raise ExperimentError(f"the RPU configuration at {path!r} does not fit aihwkit", problems)
    return rpu


def family_of(rpu_config: Any) -> str:
    """The config family: the first class of its MRO defined in ``aihwkit.simulator.configs``.

    A preset reports the family it extends (``ReRamSBPreset`` -> ``SingleRPUConfig``).
    """
    return family_of_class(type(rpu_config))


def tile_kind(rpu_config: Any) -> Literal["torch", "rpucuda"]:
    """``rpucuda`` when the config's tiles wrap the C++ RPUCuda simulator, else ``torch``.

    Read from ``tile_class`` rather than from a list of names, so presets and later
    families are classified by what they build (see the module docstring). With
    per-layer configurations, ``rpucuda`` if any layer's is.
    """
    from aihwkit.simulator.tiles.rpucuda import RPUCudaSimulatorTileWrapper

    if any(tile_kind(c) == "rpucuda" for c in layer_configs(rpu_config).values()):
        return "rpucuda"
    tile_class = getattr(rpu_config, "tile_class", None)
    if isinstance(tile_class, type) and issubclass(tile_class, RPUCudaSimulatorTileWrapper):
        return "rpucuda"
    return "torch"


def is_inference_family(rpu_config: Any) -> bool:
    """Whether the config has an inference noise model (programming, drift, read noise)."""
    return "noise_model" in field_names(type(rpu_config))


def pulsed_training(rpu_config: Any) -> bool:
    """Whether training updates the weights in memory with device pulses.

    True for ``SingleRPUConfig`` with a pulsed device, ``UnitCellRPUConfig`` (transfer
    compounds, Tiki-Taka, vector cells) and ``DigitalRankUpdateRPUConfig`` (mixed
    precision: the rank update is digital, its transfer to the array pulsed), unless
    ``update.pulse_type`` is ``NONE`` (a floating-point update). False for inference
    families (hardware-aware training: noisy forward, perfect backward, ideal update) and
    for ``FloatingPointRPUConfig``.
    """
    from aihwkit.simulator.configs import (
        DigitalRankUpdateRPUConfig,
        PulseType,
        SingleRPUConfig,
        UnitCellRPUConfig,
    )
    from aihwkit.simulator.configs.devices import PulsedDevice

    if isinstance(rpu_config, SingleRPUConfig):
        pulsed = isinstance(rpu_config.device, PulsedDevice)
    else:
        pulsed = isinstance(rpu_config, UnitCellRPUConfig | DigitalRankUpdateRPUConfig)
    return pulsed and rpu_config.update.pulse_type != PulseType.NONE


def config_families() -> list[str]:
    """The RPU config families this aihwkit has (presets excluded), sorted."""
    return sorted(family_classes())


def inference_families() -> list[str]:
    """The families with an inference noise model (drift), sorted."""
    return sorted(n for n, c in family_classes().items() if "noise_model" in field_names(c))


@functools.cache
def torch_families() -> tuple[str, ...]:
    """The families whose tiles are plain torch (run on any GPU torch sees), sorted."""
    found = []
    for name, cls in family_classes().items():
        try:
            kind = tile_kind(cls())
        except Exception:  # an abstract family that cannot be built on its own
            continue
        if kind == "torch":
            found.append(name)
    return tuple(sorted(found))


# -- an RPU configuration from its spec -------------------------------------------------


def rpu_config(spec: RPUSpec, path: str) -> tuple[Any, list[Problem]]:
    """The aihwkit config ``spec`` describes (``None`` if its name is unknown), and problems.

    Per-layer configurations (``spec.layers``) are built too and attached to it
    (:mod:`aif.aims.analog.rpu_layers`); their problems are at ``<path>.layers.<pattern>``.
    """
    rpu, problems = _one_config(spec, path)
    configs: dict[str, Any] = {}
    for pattern, layer_spec in spec.layers.items():
        where = f"{path}.layers.{pattern}"
        if layer_spec.layers:
            problems.append((f"{where}.layers", "a layer's configuration has no layers of its own"))
        config, faults = _one_config(layer_spec, where)
        problems += faults
        configs[pattern] = config
    if rpu is not None and not problems:
        attach(rpu, configs)
    return rpu, problems


def _one_config(spec: RPUSpec, path: str) -> tuple[Any, list[Problem]]:
    if spec.config not in config_classes():
        families = sorted(family_classes())
        presets = sorted(n for n in config_classes() if n not in families)
        listing = f"families: {', '.join(families)}; presets: {', '.join(presets)}"
        return None, [
            (f"{path}.config", unknown("RPU config", spec.config, config_classes(), listing))
        ]
    rpu = config_classes()[spec.config]()
    problems: list[Problem] = []
    if spec.device is not None:
        problems += _set_device(rpu, spec.device, f"{path}.device")
    if spec.device_params:
        where = f"{path}.device_params"
        if _settable(type(rpu), "device"):
            problems += apply_overrides(rpu.device, spec.device_params, where)
        else:
            problems.append(_lacks(rpu, where, "device"))
    for section, values in spec.sections().items():
        problems += _set_section(rpu, section, values, f"{path}.{section}")
    if spec.noise_model is not None:
        problems += _set_noise_model(rpu, spec.noise_model, f"{path}.noise_model")
    if spec.drift_compensation is not None:
        problems += _set_compensation(rpu, spec.drift_compensation, f"{path}.drift_compensation")
    if not any(where.startswith(f"{path}.device") for where, _ in problems):
        problems += _empty_compound(rpu, path)
    return rpu, problems


def unparsed_problems(raw: object, path: str) -> list[Problem]:
    """Unknown extra fields of an ``rpu`` mapping that does not parse as a whole.

    The spec check reports what does not parse; names only aihwkit knows are checked
    here, so a misspelt section is not hidden by another mistake.
    """
    if not isinstance(raw, Mapping):
        return []
    name = raw.get("config", RPUSpec.model_fields["config"].default)
    cls = config_classes().get(name) if isinstance(name, str) else None
    rpu = cls() if cls is not None else None
    return [
        (f"{path}.{key}", _unknown_field(rpu, key))
        for key in raw
        if isinstance(key, str)
        and key not in RPUSpec.model_fields
        and key not in _any_family_sections()
    ]


@functools.cache
def _any_family_sections() -> frozenset[str]:
    """The sections some family has: one the config lacks gets the families that take it."""
    return frozenset(n for c in family_classes().values() for n in section_names(c))


def _set_section(rpu: Any, section: str, values: Any, where: str) -> list[Problem]:
    """Overrides on the parameter section ``section`` of ``rpu`` (``forward``, ``pre_post``)."""
    if section not in section_names(type(rpu)) and section not in _any_family_sections():
        return [(where, _unknown_field(rpu, section))]
    if not isinstance(values, Mapping):
        return [(where, f"expected a mapping of {section} fields, got {values!r}")]
    if not values:
        return []
    if not _settable(type(rpu), section):
        return [_lacks(rpu, where, section)]
    current = getattr(rpu, section)
    if current is None:  # an optional section aihwkit leaves out (act_quant_config)
        annotation = type_hints(type(rpu)).get(section)
        options = [o for o in typing.get_args(annotation) if dataclasses.is_dataclass(o)]
        current = options[0]() if options and isinstance(options[0], type) else None
        setattr(rpu, section, current)
    problems: list[Problem] = []
    if section == "mapping":
        problems = _negative_sizes(current, values, where)
        bad = {w.rpartition(".")[2] for w, _ in problems}
        values = {k: v for k, v in values.items() if k not in bad}
    return problems + apply_overrides(current, values, where)


def _unknown_field(rpu: Any, name: str) -> str:
    """``unknown field 'noise'; did you mean 'noise_model'? (valid for ...: ...)``."""
    sections = section_names(type(rpu)) if rpu is not None else sorted(_any_family_sections())
    valid = [*RPUSpec.model_fields, *(n for n in sections if n not in _NAMED)]
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    family = f" for {type(rpu).__name__}" if rpu is not None else ""
    return f"unknown field {name!r}{hint} (valid{family}: {', '.join(valid)})"


#: The sections :class:`RPUSpec` names as fields (the others are extra fields).
_NAMED = frozenset(RPUSpec.model_fields)


def _negative_sizes(target: Any, values: Mapping[str, Any], where: str) -> list[Problem]:
    """Mapping sizes (``max_input_size``) are counts, where 0 means no limit."""
    problems = []
    for key, value in values.items():
        current = getattr(target, key, None)
        is_count = isinstance(current, int) and not isinstance(current, bool)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if is_count and number and value < 0:
            problems.append((f"{where}.{key}", f"must be 0 (no limit) or more, got {value}"))
    return problems


def _settable(cls: type, field: str) -> bool:
    return dataclasses.is_dataclass(cls) and any(
        f.name == field and f.init for f in dataclasses.fields(cls)
    )


def _lacks(rpu: Any, where: str, field: str) -> Problem:
    """A section the family does not have, or fixes, and the families that take it."""
    family = family_of_class(type(rpu))
    having = sorted(n for n, c in family_classes().items() if _settable(c, field))
    why = (
        f"has no settable {field!r} (aihwkit fixes it)"
        if field in field_names(type(rpu))
        else f"has no {field!r}"
    )
    return (where, f"{family} {why}; families that take it: {', '.join(having)}")


def _set_device(rpu: Any, name: str, where: str) -> list[Problem]:
    found = resolve("device", name, device_classes(), where)
    if isinstance(found, tuple):
        return [found]
    if not _settable(type(rpu), "device"):
        return [_lacks(rpu, where, "device")]
    annotation = type_hints(type(rpu)).get("device", Any)
    if not _fits(found, annotation):
        fitting = sorted(n for n, c in device_classes().items() if _fits(c, annotation))
        family = family_of_class(type(rpu))
        return [(where, f"{name} does not fit {family}; devices that do: {', '.join(fitting)}")]
    rpu.device = found()
    return []


def _fits(cls: type, annotation: Any) -> bool:
    """Whether device ``cls`` suits a ``device`` field annotated ``annotation``.

    aihwkit annotates ``SingleRPUConfig.device`` as ``PulsedDevice`` yet runs it with
    ``IdealDevice`` too (a floating-point update behind a non-ideal forward and backward).
    """
    from aihwkit.simulator.configs.devices import IdealDevice, PulsedDevice

    options = typing.get_args(annotation) or (annotation,)
    if cls is IdealDevice and PulsedDevice in options:
        return True
    return any(isinstance(o, type) and issubclass(cls, o) for o in options)


def _empty_compound(rpu: Any, path: str) -> list[Problem]:
    """Unit-cell families default to an abstract cell, compounds to no devices at all."""
    from aihwkit.simulator.configs.compounds import DigitalRankUpdateCell, UnitCell

    device = getattr(rpu, "device", None)
    family = family_of_class(type(rpu))
    if type(device) in (UnitCell, DigitalRankUpdateCell):
        cells = sorted(n for n, c in device_classes().items() if issubclass(c, type(device)))
        # common presets first (ReRAM soft-bounds, Tiki-Taka), the AGAD variants last
        presets = sorted(
            (
                n
                for n, c in config_classes().items()
                if family_of_class(c) == family and n != family
            ),
            key=lambda n: (n.startswith("AGAD"), "ReRamSB" not in n, "TikiTaka" not in n, n),
        )
        return [
            (
                f"{path}.device",
                f"{family} has no usable default device; name one of {', '.join(cells)}, "
                f"or use a preset such as {', '.join(presets[:4])}",
            )
        ]
    if isinstance(device, UnitCell) and not device.unit_cell_devices:
        return [
            (
                f"{path}.device_params.unit_cell_devices",
                f"{type(device).__name__} needs its devices: a list of device names such as "
                "[SoftBoundsDevice, SoftBoundsDevice]",
            )
        ]
    return []


def _set_noise_model(rpu: Any, spec: NoiseModelSpec, where: str) -> list[Problem]:
    if not _settable(type(rpu), "noise_model"):
        return [_lacks(rpu, where, "noise_model")]
    found = resolve("noise model", spec.name, noise_model_classes(), where)
    if isinstance(found, tuple):
        return [found]
    kwargs, problems = call_with(found, spec.params, f"{where}.params")
    if problems:
        return problems
    try:
        rpu.noise_model = found(**kwargs)
    except Exception as exc:  # aihwkit checks its arguments with its own exceptions
        return [(f"{where}.params", f"{spec.name} refuses these parameters: {describe(exc)}")]
    return []


def _set_compensation(rpu: Any, name: str, where: str) -> list[Problem]:
    if not _settable(type(rpu), "drift_compensation"):
        return [_lacks(rpu, where, "drift_compensation")]
    if name.lower() == "none":
        rpu.drift_compensation = None
        return []
    found = resolve("drift compensation", name, drift_compensation_classes(), where)
    if isinstance(found, tuple):
        return [(where, f"{found[1]} (or none)")]
    rpu.drift_compensation = found()
    return []
