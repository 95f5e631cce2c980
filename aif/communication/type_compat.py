"""Port compatibility: may an output port of one MPAI-AIF type feed an input port of another?

The rules (lossless scalar widening, arrays element-wise, structs field by field, variants
option by option, tensors by dtype and shape) are summarised in the docstring of
``aif.communication.types``, the public home of ``compatibility_problem``. They live apart
from the classes in ``type_model`` because they compare two types rather than check a value,
and apart from the parser because parsing never needs them. The rules are sound: a value
that fits the output's type also fits every input type that accepts it, so checking at the
writer suffices.
"""

from __future__ import annotations

from aif.communication.type_model import (
    Any,
    Array,
    RecordType,
    Scalar,
    Struct,
    Tensor,
    Variant,
    _field_diff,
    _shape_problem,
)

__all__ = ["compatibility_problem"]


def _bits(name: str) -> tuple[str, int]:
    """("int", 16), ("uint", 8), ("float", 32), or (name, 0) for non-numeric scalars."""
    name = "uint8" if name == "byte" else name
    for kind in ("uint", "int", "float"):
        if name.startswith(kind) and name[len(kind) :].isdigit():
            return kind, int(name[len(kind) :])
    return name, 0


def _scalar_fits(produced: str, accepted: str) -> bool:
    """Lossless widening: every value of ``produced`` is exactly a value of ``accepted``."""
    (pk, pb), (ak, ab) = _bits(produced), _bits(accepted)
    if (pk, pb) == (ak, ab):
        return True  # equal, or byte <-> uint8
    if pk == "float" or pk == ak:
        return pk == ak and pb < ab  # float32 -> float64, int8 -> int16, uint8 -> uint16...
    if pk not in ("int", "uint"):
        return False
    if ak == "float":
        return pb <= (16 if ab == 32 else 32)  # the float's mantissa holds every value
    return pk == "uint" and ak == "int" and pb < ab


def _problem(produced: RecordType, accepted: RecordType, where: str) -> str | None:
    if produced == accepted or isinstance(accepted, Any):
        return None
    label = "" if not where else f"{'field' if where.strip('[]') else 'element'} {where!r}: "
    if isinstance(produced, Variant):
        for option in produced.options:
            reason = _problem(option, accepted, where)
            if reason is not None:
                return f"{reason} (option {option} of {produced})"
        return None
    if isinstance(accepted, Variant):
        if any(_problem(produced, option, where) is None for option in accepted.options):
            return None
        return f"{label}{produced} fits no option of {accepted}"
    if isinstance(produced, Any):
        return f"{label}any does not fit {accepted}: the output may send any value"
    if isinstance(produced, Scalar) and isinstance(accepted, Scalar):
        ok = _scalar_fits(produced.name, accepted.name)
        return None if ok else f"{label}{produced} does not fit {accepted}"
    if isinstance(produced, Array) and isinstance(accepted, Array):
        if accepted.length is not None and produced.length != accepted.length:
            found = (
                f"is {produced.length}, not {accepted.length}" if produced.length else "may differ"
            )
            return f"{label}{produced} does not fit {accepted}: the length {found}"
        return _problem(produced.element, accepted.element, where + "[]")
    if isinstance(produced, Struct) and isinstance(accepted, Struct):
        have, want = dict(produced.fields), dict(accepted.fields)
        if have.keys() != want.keys():
            diff = _field_diff(list(want), list(have))
            return f"{label}{produced} does not fit {accepted}: {diff}"
        for name, field_type in accepted.fields:
            reason = _problem(have[name], field_type, f"{where}.{name}" if where else name)
            if reason is not None:
                return reason
        return None
    if isinstance(produced, Tensor) and isinstance(accepted, Tensor):
        if produced.dtype != accepted.dtype:
            why: str | None = f"the dtype is {produced.dtype}, not {accepted.dtype}"
        else:
            why = _shape_problem(accepted.shape, produced.shape)
        return None if why is None else f"{label}{produced} does not fit {accepted}: {why}"
    return f"{label}{produced} does not fit {accepted}"


def compatibility_problem(produced: RecordType, accepted: RecordType) -> str | None:
    """None when an output of type ``produced`` may feed an input of type ``accepted``.

    Otherwise a one-line reason naming the field path, e.g.
    ``field 'frame.x': int32 does not fit int16``.
    """
    return _problem(produced, accepted, "")
