"""The MPAI-AIF type model: the type classes and how each checks a Python value.

This is where ``RecordType`` and its subclasses (``Scalar``, ``Any``, ``Array``, ``Struct``,
``Variant``, ``Tensor``) live, with everything their ``check`` needs: integer and float
ranges, the bulk paths that check a long list or a numpy array without visiting every
element, and the error messages that name what was found. It is split from the parser
(``type_parser``) and the port rules (``type_compat``) so that each stays small; import the
public names from ``aif.communication.types``, whose docstring holds the grammar and the
table of values each type takes.

Imports run one way: ``type_parser`` and ``type_compat`` import this module, never the
reverse at import time. The one edge back is ``RecordType.accepts``, which imports
``compatibility_problem`` when called, since the rules must see every class.
"""

from __future__ import annotations

import abc
import functools
import math
import typing
from dataclasses import dataclass
from typing import cast

import numpy as np

from aif.errors import PortTypeError

_INT_RANGES: dict[str, tuple[int, int]] = {
    "byte": (0, 255),
    **{f"int{b}": (-(1 << (b - 1)), (1 << (b - 1)) - 1) for b in (8, 16, 32, 64)},
    **{f"uint{b}": (0, (1 << b) - 1) for b in (8, 16, 32, 64)},
}
_FLOAT_MAX = {
    "float32": float(np.finfo(np.float32).max),
    "float64": float(np.finfo(np.float64).max),
}
SCALAR_NAMES: tuple[str, ...] = ("byte", "bool", "string", *list(_INT_RANGES)[1:], *_FLOAT_MAX)
TENSOR_DTYPES: tuple[str, ...] = (
    "bool", *list(_INT_RANGES)[1:], "float16", "float32", "float64", "complex64",
    "complex128",
)  # fmt: skip
#: Deepest nesting a parsed type may have; deeper text is refused (and would be unreadable).
MAX_DEPTH = 32
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class RecordType(abc.ABC):
    """A parsed MPAI-AIF type. Subclasses are frozen dataclasses: hashable and comparable."""

    __slots__ = ()

    @abc.abstractmethod
    def check(self, value: object, path: str = "value") -> None:
        """Raise ``PortTypeError`` naming ``path`` (e.g. ``value.frame[3]``) unless value fits."""

    def accepts(self, produced: RecordType) -> bool:
        """True when an output port of type ``produced`` may feed an input port of this type."""
        from aif.communication.type_compat import compatibility_problem  # see module docstring

        return compatibility_problem(produced, self) is None

    @abc.abstractmethod
    def __str__(self) -> str:
        """The canonical spelling, which ``parse_type`` reads back to an equal type."""


def _describe(value: object) -> str:
    """Name what was found, briefly, for an error message."""
    kind = type(value)
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if isinstance(value, np.ndarray) or (kind.__module__.startswith("torch") and shape is not None):
        dtype = getattr(dtype, "name", None) or str(dtype).removeprefix("torch.")
        where = kind.__module__.split(".")[0]
        return f"{where}.{kind.__name__} of {dtype} with shape {tuple(shape or ())}"
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    if isinstance(value, bool | int | float | str | bytes | bytearray | np.generic):
        return f"{name} {_short(value.item() if isinstance(value, np.generic) else value)}"
    if isinstance(value, list | tuple | dict):
        return f"{name} of length {len(value)}"
    return name


_DTYPE_NAMES: dict[np.dtype[typing.Any], str] = {}


def _dtype_name(dtype: np.dtype[typing.Any]) -> str:
    """``dtype.name``, cached: numpy computes it in microseconds, and records pass on every send."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = dtype.name
        if len(_DTYPE_NAMES) < 256:
            _DTYPE_NAMES[dtype] = name
    return name


def _short(value: object) -> str:
    text = repr(value)
    return text[:37] + "..." if len(text) > 40 else text


def _field_diff(want: list[str], have: list[object]) -> str:
    """``missing field 'y'; unexpected fields 'z', 'w'``: how two key sets differ."""
    missing = [repr(name) for name in want if name not in have]
    extra = [repr(name) for name in have if name not in want]
    parts = [f"missing field{'s' * (len(missing) > 1)} {', '.join(missing)}"] * bool(missing)
    parts += [f"unexpected field{'s' * (len(extra) > 1)} {', '.join(extra)}"] * bool(extra)
    return "; ".join(parts)


def _mismatch(path: str, expected: object, value: object, hint: str = "") -> PortTypeError:
    return PortTypeError(f"{path}: expected {expected}{hint}, got {_describe(value)}")


def _check_int(name: str, value: object, path: str) -> None:
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise _mismatch(path, name, value)
        value = int(value)
    lo, hi = _INT_RANGES[name]
    if not lo <= value <= hi:
        raise PortTypeError(f"{path}: {_short(value)} does not fit {name} ({lo}..{hi})")


def _check_float(name: str, value: object, path: str) -> None:
    if type(value) is float:
        number = value
    elif isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _mismatch(path, name, value)
    else:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isinf(number) and isinstance(value, int | np.integer):
            raise PortTypeError(f"{path}: {_short(value)} does not fit {name}") from None
    if abs(number) > _FLOAT_MAX[name] and not math.isinf(number):
        raise PortTypeError(f"{path}: {number!r} does not fit {name} (±{_FLOAT_MAX[name]:.7g})")


def _check_bool(name: str, value: object, path: str) -> None:
    if type(value) is not bool and not isinstance(value, np.bool_):
        raise _mismatch(path, name, value)


def _check_string(name: str, value: object, path: str) -> None:
    if not isinstance(value, str):
        raise _mismatch(path, name, value)


_SCALAR_CHECKS = {
    **dict.fromkeys(_INT_RANGES, _check_int),
    **dict.fromkeys(_FLOAT_MAX, _check_float),
    "bool": _check_bool,
    "string": _check_string,
}


@dataclass(frozen=True, slots=True)
class Scalar(RecordType):
    """One of ``SCALAR_NAMES``."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in _SCALAR_CHECKS:
            raise ValueError(f"unknown scalar {self.name!r}; expected one of {SCALAR_NAMES}")

    def check(self, value: object, path: str = "value") -> None:
        _SCALAR_CHECKS[self.name](self.name, value, path)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Any(RecordType):
    """``any``: every value fits; only an ``any`` input accepts an ``any`` output."""

    def check(self, value: object, path: str = "value") -> None:
        return None

    def __str__(self) -> str:
        return "any"


def _all_fit(element: RecordType, items: list[object] | tuple[object, ...]) -> bool:
    """Decide with C-speed builtins that every item fits; False means "look item by item"."""
    if not items or isinstance(element, Any):
        return True
    if not isinstance(element, Scalar):
        return False
    kinds = set(map(type, items))
    numbers = cast("list[float]", items)  # only read as numbers once kinds says they are
    name = element.name
    if name in _INT_RANGES:
        lo, hi = _INT_RANGES[name]
        return kinds == {int} and lo <= min(numbers) and max(numbers) <= hi
    if name in _FLOAT_MAX:
        top = _FLOAT_MAX[name]
        return kinds <= {int, float} and -top <= min(numbers) and max(numbers) <= top
    return kinds == {bool if name == "bool" else str}


@functools.lru_cache(maxsize=512)
def _takes_items(element: RecordType, dtype: str) -> bool:
    """Whether ``element[]`` takes a 1-d buffer (ndarray, bytes) of numpy ``dtype`` items.

    Exactly when ``element`` accepts that scalar type as a port would (or accepts ``any``),
    so whatever fits an output port also fits every input port that accepts it.
    """
    item: RecordType | None = Scalar(dtype) if dtype in _SCALAR_CHECKS else None
    return element.accepts(Any()) or (item is not None and element.accepts(item))


@dataclass(frozen=True, slots=True)
class Array(RecordType):
    """``T[]`` (any length, ``length`` None) or ``T[N]``."""

    element: RecordType
    length: int | None = None

    def __post_init__(self) -> None:
        if self.length is not None and (type(self.length) is not int or self.length < 1):
            raise ValueError(f"array length must be an int of at least 1, got {self.length!r}")

    def _check_length(self, found: int, path: str) -> None:
        if self.length is not None and found != self.length:
            raise PortTypeError(f"{path}: expected {self.length} elements for {self}, got {found}")

    def check(self, value: object, path: str = "value") -> None:
        element = self.element
        if isinstance(value, list | tuple):
            self._check_length(len(value), path)
            if not _all_fit(element, value):
                for index, item in enumerate(value):
                    element.check(item, f"{path}[{index}]")
            return
        if isinstance(value, np.ndarray):
            if value.ndim == 1 and _takes_items(element, _dtype_name(value.dtype)):
                self._check_length(value.shape[0], path)
                return
        elif isinstance(value, bytes | bytearray | memoryview) and _takes_items(element, "uint8"):
            self._check_length(value.nbytes if isinstance(value, memoryview) else len(value), path)
            return
        hint = " (a list or tuple)"
        if isinstance(element, Scalar) and element.name != "string":
            dtype = "uint8" if element.name == "byte" else element.name
            hint = f" (a list, {'bytes, ' * (dtype == 'uint8')}or a 1-d numpy array of {dtype})"
        raise _mismatch(path, self, value, hint)

    def __str__(self) -> str:
        inner = f"({self.element})" if isinstance(self.element, Tensor) else str(self.element)
        return f"{inner}[{'' if self.length is None else self.length}]"


@dataclass(frozen=True, slots=True)
class Struct(RecordType):
    """``{T a; U b}``: a dict with exactly these keys; ``fields`` keeps the written order."""

    fields: tuple[tuple[str, RecordType], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple((n, t) for n, t in self.fields))
        names = [name for name, _ in self.fields]
        bad = [n for n in names if not n or n[0].isdigit() or not _IDENT_CHARS.issuperset(n)]
        if not names or bad or len(set(names)) != len(names):
            raise ValueError(f"struct needs unique identifier field names, got {names!r}")

    def check(self, value: object, path: str = "value") -> None:
        if not isinstance(value, dict):
            raise _mismatch(path, f"a dict for struct {self}", value)
        fields = self.fields
        if len(value) != len(fields) or not all(name in value for name, _ in fields):
            diff = _field_diff([name for name, _ in fields], list(value))
            raise PortTypeError(f"{path}: {diff} for struct {self}")
        for name, field_type in fields:
            field_type.check(value[name], f"{path}.{name}")

    def __str__(self) -> str:
        return "{" + "; ".join(f"{t} {name}" for name, t in self.fields) + "}"


def _could_hold(option: RecordType, value: object) -> bool:
    """Whether ``value`` is the kind of Python value ``option`` takes (lists for arrays...)."""
    if isinstance(option, Any):
        return True
    if isinstance(option, Variant):
        return any(_could_hold(o, value) for o in option.options)
    if isinstance(value, dict):
        return isinstance(option, Struct)
    if isinstance(value, list | tuple | bytes | bytearray | memoryview):
        return isinstance(option, Array)
    if isinstance(value, np.ndarray):
        return isinstance(option, Array | Tensor)
    if type(value).__module__.startswith("torch"):
        return isinstance(option, Tensor)
    return isinstance(option, Scalar)


@dataclass(frozen=True, slots=True)
class Variant(RecordType):
    """``{T | U}``: a value that fits one of two or more distinct options."""

    options: tuple[RecordType, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        if len(self.options) < 2 or len(set(self.options)) != len(self.options):
            raise ValueError(f"a variant needs two or more distinct options, got {self.options}")

    def check(self, value: object, path: str = "value") -> None:
        for option in self.options:
            try:
                option.check(value, path)
            except PortTypeError:
                continue
            return
        likely = [option for option in self.options if _could_hold(option, value)]
        if len(likely) == 1:  # the option the sender meant gives the most precise reason
            likely[0].check(value, path)
        raise _mismatch(path, f"one of {self}", value)

    def __str__(self) -> str:
        return "{" + " | ".join(map(str, self.options)) + "}"


_Shape = tuple[int | None, ...] | None


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _shape_problem(want: _Shape, have: _Shape) -> str | None:
    """Why a tensor of shape ``have`` (None: any size or any shape) may not fit ``want``."""
    if want is None:
        return None
    if have is None:
        return "the shape may differ"
    if len(have) != len(want):
        return f"it has {len(have)} dimensions, not {len(want)}"
    for index, (w, h) in enumerate(zip(want, have, strict=True)):
        if w is not None and w != h:
            return f"dimension {index} " + (f"is {h}, not {w}" if h else f"may differ from {w}")
    return None


def _torch_dtype_shape(value: object) -> tuple[str, tuple[int, ...]] | None:
    import torch  # only when the value came from torch: importing this module stays cheap

    if not isinstance(value, torch.Tensor):
        return None
    return str(value.dtype).removeprefix("torch."), tuple(value.shape)


@dataclass(frozen=True, slots=True)
class Tensor(RecordType):
    """``tensor<dtype>[d0,d1,...]`` (``None`` dims: ``?``) or ``tensor<dtype>`` (``shape`` None)."""

    dtype: str
    shape: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        if self.dtype not in TENSOR_DTYPES:
            raise ValueError(
                f"unknown tensor dtype {self.dtype!r}; expected one of {TENSOR_DTYPES}"
            )
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(self.shape))
            if not self.shape or any(
                d is not None and (type(d) is not int or d < 1) for d in self.shape
            ):
                raise ValueError(f"tensor shape needs dims >= 1 or None, got {self.shape!r}")

    def check(self, value: object, path: str = "value") -> None:
        found: tuple[str, tuple[int, ...]] | None = None
        if isinstance(value, np.ndarray):
            found = _dtype_name(value.dtype), value.shape
        elif type(value).__module__.startswith("torch"):
            found = _torch_dtype_shape(value)
        if found is None:
            raise _mismatch(path, self, value, " (a numpy ndarray or torch Tensor)")
        dtype, shape = found
        if dtype != self.dtype:
            raise PortTypeError(f"{path}: expected dtype {self.dtype} for {self}, got {dtype}")
        if self.shape is not None and _shape_problem(self.shape, shape) is not None:
            raise PortTypeError(f"{path}: expected shape {_shape_text(self.shape)}, got {shape}")

    def __str__(self) -> str:
        return f"tensor<{self.dtype}>" + ("" if self.shape is None else _shape_text(self.shape))
