"""Names in an experiment, resolved against the installed aihwkit itself.

aihwkit adds presets, devices and noise models from release to release, so no list of
names is kept here: config families and presets are the exported classes of
``aihwkit.simulator.configs`` and ``aihwkit.simulator.presets`` that are RPU configs,
devices are their exported device and compound classes, noise models and drift
compensations are the classes ``aihwkit.inference`` exports. A name that is not there
is a problem that lists the valid ones and a close match (:func:`unknown`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Mapping

Problem = tuple[str, str]


# -- the names aihwkit exports ---------------------------------------------------------


@functools.cache
def config_classes() -> dict[str, type]:
    """Config families and presets: RPU config classes the two config modules export."""
    from aihwkit.simulator.parameters.base import RPUConfigBase

    return _exported((RPUConfigBase,))


@functools.cache
def family_classes() -> dict[str, type]:
    """Only the families: the RPU config classes defined in ``aihwkit.simulator.configs``."""
    return {
        name: cls
        for name, cls in config_classes().items()
        if cls.__module__.startswith("aihwkit.simulator.configs")
    }


@functools.cache
def device_classes() -> dict[str, type]:
    """Devices and compound cells (unit cells, transfer and mixed-precision compounds)."""
    from aihwkit.simulator.configs.compounds import DigitalRankUpdateCell, UnitCell
    from aihwkit.simulator.configs.devices import FloatingPointDevice, IdealDevice, PulsedDevice

    return _exported(
        (PulsedDevice, UnitCell, DigitalRankUpdateCell, FloatingPointDevice, IdealDevice)
    )


def _exported(bases: tuple[type, ...]) -> dict[str, type]:
    """Public classes of ``aihwkit.simulator.configs`` and ``presets`` derived from ``bases``."""
    from aihwkit.simulator import configs, presets

    return {
        name: obj
        for module in (configs, presets)
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, bases) and not name.startswith("_")
    }


@functools.cache
def noise_model_classes() -> dict[str, type]:
    """Inference noise models (``BaseNoiseModel`` itself is abstract and left out)."""
    import aihwkit.inference as inference

    base = inference.BaseNoiseModel
    return {n: c for n, c in _classes(inference).items() if issubclass(c, base) and c is not base}


@functools.cache
def drift_compensation_classes() -> dict[str, type]:
    """Drift compensations: every class of ``aihwkit.inference.compensation``'s modules.

    ``aihwkit.inference`` exports only ``GlobalDriftCompensation``; the package also has
    ``GlobalDriftCompensationWithExactReference`` and ``PerColumnDriftCompensation``.
    ``BaseDriftCompensation`` itself is abstract and left out.
    """
    import importlib
    import pkgutil

    import aihwkit.inference.compensation as package
    from aihwkit.inference.compensation.base import BaseDriftCompensation as base

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        module = importlib.import_module(info.name)
        found.update(
            (n, c) for n, c in _classes(module).items() if issubclass(c, base) and c is not base
        )
    return found


def _classes(module: types.ModuleType) -> dict[str, type]:
    return {n: o for n, o in vars(module).items() if isinstance(o, type) and not n.startswith("_")}


def unknown(
    kind: str, name: object, valid: typing.Iterable[str], listing: str | None = None
) -> str:
    """``unknown device 'ConstStepDevice' (did you mean 'ConstantStepDevice'?); valid: ...``.

    ``listing`` replaces the plain list of valid names (e.g. to group them).
    """
    names = sorted(valid)
    close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
    if isinstance(name, str) and not close:  # a prefix: prog -> prog_coeff
        close = [n for n in names if n.lower().startswith(name.lower())][:1]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; {listing or 'valid: ' + ', '.join(names)}"


def resolve(kind: str, name: str, valid: Mapping[str, type], path: str) -> type | Problem:
    """The class ``name`` in ``valid``, or a problem listing the valid names."""
    if name in valid:
        return valid[name]
    return (path, unknown(kind, name, valid))


# -- an RPU configuration from its spec -------------------------------------------------


def family_of_class(cls: type) -> str:
    """The first class of ``cls.__mro__`` defined in ``aihwkit.simulator.configs``."""
    for base in cls.__mro__:
        if base.__module__.startswith("aihwkit.simulator.configs"):
            return base.__name__
    return cls.__name__


def describe(exc: BaseException) -> str:
    """``TypeName: message`` (aihwkit raises some errors without a message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- overrides on aihwkit dataclasses --------------------------------------------------


def field_names(cls: type) -> list[str]:
    """The dataclass fields of ``cls`` (an aihwkit config, device or parameter class)."""
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def section_names(cls: type) -> list[str]:
    """The parameter sections of RPU config class ``cls``, from its own dataclass fields.

    A section is a settable field holding an aihwkit parameter dataclass (``forward``,
    ``mapping``, ``pre_post``, ``remap``, ...) or an optional one (``act_quant_config``);
    ``device``, the noise model and the tile classes are set otherwise. Read from the
    class, so a section a later aihwkit adds is settable without code here.
    """
    if not dataclasses.is_dataclass(cls):
        return []
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        options = typing.get_args(hints.get(f.name)) or (hints.get(f.name),)
        is_params = any(
            isinstance(o, type)
            and dataclasses.is_dataclass(o)
            and o.__module__.startswith("aihwkit.simulator.parameters")
            for o in options
        )
        if f.name != "device" and is_params:
            names.append(f.name)
    return names
