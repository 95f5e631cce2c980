"""Names and values in an experiment, resolved against the installed aihwkit itself.

aihwkit adds presets, devices and noise models from release to release, so no list of
names is kept here: config families and presets are the exported classes of
``aihwkit.simulator.configs`` and ``aihwkit.simulator.presets`` that are RPU configs,
devices are their exported device and compound classes, noise models and drift
compensations are the classes ``aihwkit.inference`` exports. A name that is not there
is a problem that lists the valid ones and a close match.

Overrides (``forward: {out_noise: 0.02}``) are checked against the
:func:`dataclasses.fields` of the actual aihwkit object and converted by each field's
type: enum fields take a member's name in any case (``abs_max``), numbers are checked
loosely (an int is a fine float), nested parameter objects take a mapping, and a
device-typed field takes a device name. Every function here returns problems as
``(path, message)`` pairs instead of raising, so callers report all of them at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from aif.aims.analog.spec import NoiseModelSpec, RPUSpec

Problem = tuple[str, str]


class _Bad(Exception):
    """A value that does not fit its field; the message says what was expected."""


# -- the names aihwkit exports ---------------------------------------------------------


@functools.cache
def config_classes() -> dict[str, type]:
    """Config families and presets: RPU config classes the two config modules export."""
    from aihwkit.simulator import configs, presets
    from aihwkit.simulator.parameters.base import RPUConfigBase

    return {
        name: obj
        for module in (configs, presets)
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, RPUConfigBase) and not name.startswith("_")
    }


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
    from aihwkit.simulator import configs, presets
    from aihwkit.simulator.configs.compounds import DigitalRankUpdateCell, UnitCell
    from aihwkit.simulator.configs.devices import FloatingPointDevice, IdealDevice, PulsedDevice

    bases = (PulsedDevice, UnitCell, DigitalRankUpdateCell, FloatingPointDevice, IdealDevice)
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
    """Drift compensations (``BaseDriftCompensation`` itself is abstract and left out)."""
    import aihwkit.inference as inference

    base = inference.BaseDriftCompensation
    return {n: c for n, c in _classes(inference).items() if issubclass(c, base) and c is not base}


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

_SECTIONS = ("forward", "backward", "update", "mapping", "modifier", "clip")


def rpu_config(spec: RPUSpec, path: str) -> tuple[Any, list[Problem]]:
    """The aihwkit config ``spec`` describes (``None`` if its name is unknown), and problems."""
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
    for section in _SECTIONS:
        values, where = getattr(spec, section), f"{path}.{section}"
        if values and _settable(type(rpu), section):
            problems += apply_overrides(getattr(rpu, section), values, where)
        elif values:
            problems.append(_lacks(rpu, where, section))
    if spec.noise_model is not None:
        problems += _set_noise_model(rpu, spec.noise_model, f"{path}.noise_model")
    if spec.drift_compensation is not None:
        problems += _set_compensation(rpu, spec.drift_compensation, f"{path}.drift_compensation")
    if not any(where.startswith(f"{path}.device") for where, _ in problems):
        problems += _empty_compound(rpu, path)
    return rpu, problems


def family_of_class(cls: type) -> str:
    """The first class of ``cls.__mro__`` defined in ``aihwkit.simulator.configs``."""
    for base in cls.__mro__:
        if base.__module__.startswith("aihwkit.simulator.configs"):
            return base.__name__
    return cls.__name__


def _settable(cls: type, field: str) -> bool:
    return dataclasses.is_dataclass(cls) and any(
        f.name == field and f.init for f in dataclasses.fields(cls)
    )


def _lacks(rpu: Any, where: str, field: str) -> Problem:
    """A section the family does not have, or fixes, and the families that take it."""
    family = family_of_class(type(rpu))
    having = sorted(n for n, c in family_classes().items() if _settable(c, field))
    why = "fixes" if field in field_names(type(rpu)) else "has no"
    return (where, f"{family} {why} {field!r}; families that take it: {', '.join(having)}")


def _set_device(rpu: Any, name: str, where: str) -> list[Problem]:
    found = resolve("device", name, device_classes(), where)
    if isinstance(found, tuple):
        return [found]
    if not _settable(type(rpu), "device"):
        return [_lacks(rpu, where, "device")]
    annotation = _type_hints(type(rpu)).get("device", Any)
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
        presets = sorted(
            n for n, c in config_classes().items() if family_of_class(c) == family and n != family
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


def describe(exc: BaseException) -> str:
    """``TypeName: message`` (aihwkit raises some errors without a message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- overrides on aihwkit dataclasses --------------------------------------------------


def field_names(cls: type) -> list[str]:
    """The dataclass fields of ``cls`` (an aihwkit config, device or parameter class)."""
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def apply_overrides(target: Any, values: Mapping[str, Any], path: str) -> list[Problem]:
    """Sets ``values`` on the aihwkit dataclass ``target`` field by field, converted.

    Unknown fields, fields aihwkit fixes (``init=False``) and values of the wrong type
    are problems at ``path.<field>``; every good value is still applied.
    """
    cls = type(target)
    fields = {f.name: f for f in dataclasses.fields(target)}
    hints = _type_hints(cls)
    problems: list[Problem] = []
    for key, value in values.items():
        where = f"{path}.{key}"
        spec = fields.get(key)
        if spec is None:
            problems.append((where, unknown(f"field of {cls.__name__}", key, fields)))
            continue
        if not spec.init:
            problems.append((where, f"{cls.__name__} fixes {key!r}; it cannot be set"))
            continue
        current = getattr(target, key)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
            problems.extend(apply_overrides(current, value, where))
            continue
        try:
            setattr(target, key, convert(value, hints.get(key, spec.type)))
        except _Bad as bad:
            problems.append((where, str(bad)))
    return problems


def call_with(
    factory: Callable[..., Any], params: Mapping[str, Any], path: str, skip: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[Problem]]:
    """Keyword arguments for ``factory`` from ``params``, checked against its signature.

    Parameters named in ``skip`` are set by the caller (e.g. ``params``, ``lr``).
    """
    signature = inspect.signature(factory)
    accepted = {
        name: p
        for name, p in signature.parameters.items()
        if name not in skip
        and name != "self"
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    hints = _type_hints(factory)
    kwargs: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in params.items():
        where = f"{path}.{key}"
        if key not in accepted:
            problems.append((where, unknown("parameter", key, accepted)))
            continue
        annotation = hints.get(key, accepted[key].annotation)
        try:
            kwargs[key] = convert(value, annotation)
        except _Bad as bad:
            problems.append((where, str(bad)))
    missing = [
        name
        for name, p in accepted.items()
        if p.default is p.empty and name not in kwargs and name not in params
    ]
    if missing:
        problems.append((path, f"missing required parameter(s): {', '.join(missing)}"))
    return kwargs, problems


def _type_hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations where aihwkit's forward references allow, else raw ones."""
    plain_class = isinstance(obj, type) and not dataclasses.is_dataclass(obj)
    target = getattr(obj, "__init__") if plain_class else obj  # noqa: B009 (mypy: unsound)
    try:
        # aihwkit annotates some fields with names it does not import at run time
        # (MixedPrecisionCompound.device: 'PulsedDevice'); the device classes resolve them.
        return typing.get_type_hints(target, localns=_device_namespace())
    except Exception:  # still unresolvable: fall back to the raw annotations
        return {}


@functools.cache
def _device_namespace() -> dict[str, type]:
    return {base.__name__: base for cls in device_classes().values() for base in cls.__mro__}


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"one of {', '.join(m.name for m in annotation)}"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _norm(text: str) -> str:
    return text.replace("_", "").replace("-", "").lower()


def convert(value: Any, annotation: Any) -> Any:
    """``value`` as the type ``annotation`` asks for, or :class:`_Bad` saying what it expected.

    Understands bool, int, float, str, enums, ``Optional``/unions, lists, tuples, dicts
    and aihwkit device classes (given by name).
    """
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        faults = []
        for option in (a for a in args if a is not type(None)):
            try:
                return convert(value, option)
            except _Bad as bad:
                faults.append(str(bad))
        names = " or ".join(_type_name(a) for a in args)
        raise _Bad(faults[0] if len(faults) == 1 else f"expected {names}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _Bad(f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise _Bad(f"expected a list of {len(args)} values, got {len(value)}")
            return tuple(convert(v, a) for v, a in zip(value, args, strict=True))
        item = args[0] if args else None
        items = [_device_or_value(v) if item is None else convert(v, item) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _Bad(f"expected a mapping, got {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {convert(k, key_type): convert(v, value_type) for k, v in value.items()}
    if annotation is list or annotation is typing.List:  # noqa: UP006 (aihwkit uses it)
        if not isinstance(value, list | tuple):
            raise _Bad(f"expected a list, got {value!r}")
        return [_device_or_value(v) for v in value]
    if annotation is dict:
        if not isinstance(value, Mapping):
            raise _Bad(f"expected a mapping, got {value!r}")
        return dict(value)
    if not isinstance(annotation, type):
        raise _Bad(f"a {_type_name(annotation)} cannot be set from an experiment")
    return _convert_plain(value, annotation)


def _convert_plain(value: Any, annotation: type) -> Any:
    if issubclass(annotation, enum.Enum):
        if isinstance(value, annotation):
            return value
        if isinstance(value, str):
            for member in annotation:
                if _norm(value) in (_norm(member.name), _norm(str(member.value))):
                    return member
        raise _Bad(f"expected {_type_name(annotation)}, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Bad(f"expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _Bad(f"expected an integer, got {value!r}{_yaml_hint(value)}")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Bad(f"expected a number, got {value!r}{_yaml_hint(value)}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Bad(f"expected text, got {value!r}")
    if isinstance(value, str) and value in device_classes():
        device = device_classes()[value]
        if issubclass(device, annotation):
            return device()
        raise _Bad(f"{value} is not a {annotation.__name__}")
    if isinstance(value, annotation):
        return value
    if dataclasses.is_dataclass(annotation) and annotation.__module__.startswith("aihwkit"):
        is_device = any(issubclass(d, annotation) for d in device_classes().values())
        hint = " (a device name)" if is_device else " (a mapping of its fields)"
        raise _Bad(f"expected a {annotation.__name__}{hint}, got {value!r}")
    raise _Bad(f"a {annotation.__name__} cannot be set from an experiment")


def _device_or_value(value: Any) -> Any:
    """List items of untyped lists (``unit_cell_devices``): device names become devices."""
    if isinstance(value, str) and value in device_classes():
        return device_classes()[value]()
    if isinstance(value, str):
        raise _Bad(unknown("device", value, device_classes()))
    return value


def _yaml_hint(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return f" (YAML reads {value} as text: write the number with a dot, e.g. 1.0e-3)"
