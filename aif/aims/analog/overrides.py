"""Overrides on aihwkit objects: values from YAML checked and converted by field type.

Overrides (``forward: {out_noise: 0.02}``) are checked against the
:func:`dataclasses.fields` of the actual aihwkit object and converted by each field's
type: enum fields take a member's name in any case (``abs_max``), numbers are checked
loosely (an int is a fine float, and ``1e-3``, which YAML 1.1 reads as text, is a fine
float too), nested parameter objects take a mapping, and a device-typed field takes a
device name; a device list (``unit_cell_devices``) takes names and mappings
(``{type: SoftBoundsDevice, dw_min: 0.1}``, or without ``type`` to change the device
already there), and a dotted key (``unit_cell_devices.1.dw_min``) reaches one nested
field. Constructor arguments (noise models, optimizers) are checked against the
signature the same way (:func:`call_with`), and an argument typed as an aihwkit class
(a noise model's ``g_converter``) takes one of its classes by name, with that class's
own arguments (``{name: SinglePairConductanceConverter, g_max: 25}``). Every function
here returns problems as ``(path, message)`` pairs instead of raising, so callers
report all of them at once.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from aif.aims.analog.aihwkit_names import device_classes, unknown

Problem = tuple[str, str]


#: A number as text: what YAML 1.1 leaves unparsed when it has no dot (``1e-3``).
_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


class Bad(Exception):
    """A value that does not fit its field; the message says what was expected."""


def apply_overrides(target: Any, values: Mapping[str, Any], path: str) -> list[Problem]:
    """Sets ``values`` on the aihwkit dataclass ``target`` field by field, converted.

    Unknown fields, fields aihwkit fixes (``init=False``) and values of the wrong type
    are problems at ``path.<field>``; every good value is still applied.
    """
    cls = type(target)
    fields = {f.name: f for f in dataclasses.fields(target)}
    hints = type_hints(cls)
    problems: list[Problem] = []
    for key, value in values.items():
        where = f"{path}.{key}"
        key, dot, rest = key.partition(".")
        spec = fields.get(key)
        if spec is None:
            problems.append((f"{path}.{key}", unknown(f"field of {cls.__name__}", key, fields)))
            continue
        if not spec.init:
            problems.append((f"{path}.{key}", f"{cls.__name__} fixes {key!r}; it cannot be set"))
            continue
        current = getattr(target, key)
        if dot:  # a dotted key: unit_cell_devices.0.dw_min, transfer_forward.out_noise
            problems.extend(_apply_dotted(current, rest, value, f"{path}.{key}"))
            continue
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
            problems.extend(apply_overrides(current, value, where))
            continue
        if _is_device_list(current, value):
            devices, faults = _device_list(current, value, where)
            problems.extend(faults)
            if not faults:
                setattr(target, key, devices)
            continue
        try:
            setattr(target, key, convert(value, hints.get(key, spec.type)))
        except Bad as bad:
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
    hints = type_hints(factory)
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
        except Bad as bad:
            problems.append((where, str(bad)))
    missing = [
        name
        for name, p in accepted.items()
        if p.default is p.empty and name not in kwargs and name not in params
    ]
    if missing:
        problems.append((path, f"missing required parameter(s): {', '.join(missing)}"))
    return kwargs, problems


def type_hints(obj: Any) -> dict[str, Any]:
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
    """``value`` as the type ``annotation`` asks for, or :class:`Bad` saying what it expected.

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
            except Bad as bad:
                faults.append(str(bad))
        names = " or ".join(_type_name(a) for a in args)
        raise Bad(faults[0] if len(faults) == 1 else f"expected {names}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise Bad(f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise Bad(f"expected a list of {len(args)} values, got {len(value)}")
            return tuple(convert(v, a) for v, a in zip(value, args, strict=True))
        item = args[0] if args else None
        items = [_device_or_value(v) if item is None else convert(v, item) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise Bad(f"expected a mapping, got {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {convert(k, key_type): convert(v, value_type) for k, v in value.items()}
    if annotation is list or annotation is typing.List:  # noqa: UP006 (aihwkit uses it)
        if not isinstance(value, list | tuple):
            raise Bad(f"expected a list, got {value!r}")
        return [_device_or_value(v) for v in value]
    if annotation is dict:
        if not isinstance(value, Mapping):
            raise Bad(f"expected a mapping, got {value!r}")
        return dict(value)
    if not isinstance(annotation, type):
        raise Bad(f"a {_type_name(annotation)} cannot be set from an experiment")
    return _convert_plain(value, annotation)


def _convert_plain(value: Any, annotation: type) -> Any:
    if issubclass(annotation, enum.Enum):
        if isinstance(value, annotation):
            return value
        if isinstance(value, str):
            for member in annotation:
                if _norm(value) in (_norm(member.name), _norm(str(member.value))):
                    return member
        raise Bad(f"expected {_type_name(annotation)}, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise Bad(f"expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise Bad(f"expected an integer, got {value!r}{_yaml_hint(value)}")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value):  # YAML 1.1 reads 1e-3 as text
            return float(value)
        raise Bad(f"expected a number, got {value!r}{_yaml_hint(value)}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise Bad(f"expected text, got {value!r}")
    if isinstance(value, str) and value in device_classes():
        device = device_classes()[value]
        if issubclass(device, annotation):
            return device()
        raise Bad(f"{value} is not a {annotation.__name__}")
    if isinstance(value, annotation):
        return value
    if not dataclasses.is_dataclass(annotation) and _named_classes(typing.cast(Any, annotation)):
        return _named_object(value, annotation)
    if dataclasses.is_dataclass(annotation) and annotation.__module__.startswith("aihwkit"):
        is_device = any(issubclass(d, annotation) for d in device_classes().values())
        hint = " (a device name)" if is_device else " (a mapping of its fields)"
        raise Bad(f"expected a {annotation.__name__}{hint}, got {value!r}")
    raise Bad(f"a {annotation.__name__} cannot be set from an experiment")


def _apply_dotted(current: Any, rest: str, value: Any, path: str) -> list[Problem]:
    """``rest`` (``dw_min``, ``0.dw_min``) below ``current``, the object at ``path``."""
    if dataclasses.is_dataclass(current) and not isinstance(current, type):
        return apply_overrides(current, {rest: value}, path)
    if not isinstance(current, list):
        return [(path, f"is a {type(current).__name__}; it has no {rest.partition('.')[0]!r}")]
    index, _, tail = rest.partition(".")
    if not index.isdigit() or int(index) >= len(current):
        valid = f"0 to {len(current) - 1}" if current else "none: the list is empty"
        return [(f"{path}.{index}", f"is not an index of this list of {len(current)}; {valid}")]
    where, item = f"{path}.{index}", current[int(index)]
    if tail:
        return _apply_dotted(item, tail, value, where)
    devices, problems = _device_list(current, [*current[: int(index)], value], path)
    if not problems:
        current[int(index)] = devices[int(index)]
    return problems


def _is_device_list(current: Any, value: Any) -> bool:
    """A list of devices (``unit_cell_devices``) written with at least one mapping."""
    return (
        isinstance(current, list)
        and isinstance(value, list | tuple)
        and any(isinstance(v, Mapping) for v in value)
    )


def _device_list(current: list[Any], value: Any, path: str) -> tuple[list[Any], list[Problem]]:
    """Devices from names and mappings: ``[SoftBoundsDevice, {type: ..., dw_min: 0.1}]``.

    A mapping without ``type`` changes the device already at its place (a preset's),
    one with ``type`` is a new device of that class with those fields.
    """
    devices: list[Any] = []
    problems: list[Problem] = []
    for i, item in enumerate(value):
        where = f"{path}.{i}"
        if not isinstance(item, Mapping):
            try:
                devices.append(_device_or_value(item))
            except Bad as bad:
                problems.append((where, str(bad)))
            continue
        fields = dict(item)
        name = fields.pop("type", None)
        if name is not None and name not in device_classes():
            problems.append((f"{where}.type", unknown("device", name, device_classes())))
            continue
        if name is not None:
            device = device_classes()[name]()
        elif i < len(current) and dataclasses.is_dataclass(current[i]):
            device = copy.deepcopy(current[i])
        else:
            problems.append(
                (
                    where,
                    f"there is no device {i} to change (the list has {len(current)}); "
                    "give its class with 'type: SoftBoundsDevice' (or another device)",
                )
            )
            continue
        problems.extend(apply_overrides(device, fields, where))
        devices.append(device)
    return devices, problems


def _device_or_value(value: Any) -> Any:
    """List items of untyped lists (``unit_cell_devices``): device names become devices."""
    if isinstance(value, str) and value in device_classes():
        return device_classes()[value]()
    if isinstance(value, str):
        raise Bad(unknown("device", value, device_classes()))
    return value


def _yaml_hint(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return f" (YAML reads {value} as text: write the number with a dot, e.g. 1.0e-3)"


@functools.cache
def _named_classes(base: Any) -> dict[str, type]:
    """The concrete aihwkit subclasses of ``base`` by name (empty for non-aihwkit bases).

    This is how an object-typed argument (a noise model's ``g_converter``) is set from
    YAML: by the name of one of its classes, with that class's own arguments.
    """
    if not base.__module__.startswith("aihwkit"):
        return {}
    import aihwkit.inference  # noqa: F401  (imports the converters and noise models)

    found: dict[str, type] = {}
    stack = [base]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        abstract = inspect.isabstract(cls) or cls.__name__.startswith("Base")
        if cls.__module__.startswith("aihwkit") and not abstract:
            found.setdefault(cls.__name__, cls)
    return found


def _named_object(value: Any, base: type) -> Any:
    """``SinglePairConductanceConverter`` or ``{name: ..., g_max: 25}`` as that object."""
    classes = _named_classes(base)
    form = f"a name ({', '.join(sorted(classes))}) or {{name: NAME, <its arguments>}}"
    if isinstance(value, str):
        name, params = value, {}
    elif isinstance(value, Mapping) and isinstance(value.get("name"), str):
        name = value["name"]
        params = {k: v for k, v in value.items() if k != "name"}
    else:
        raise Bad(f"expected a {base.__name__}: {form}, got {value!r}")
    if name not in classes:
        raise Bad(unknown(base.__name__, name, classes))
    kwargs, problems = call_with(classes[name], params, name)
    if problems:
        raise Bad("; ".join(f"{where}: {message}" for where, message in problems))
    try:
        return classes[name](**kwargs)
    except Exception as exc:  # aihwkit checks its arguments with its own exceptions
        raise Bad(f"{name} refuses these arguments: {exc}") from exc
