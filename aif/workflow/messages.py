"""Problems as users read them: one ``file:line: dotted.path: problem`` line each.

pydantic's errors are rewritten here: unknown fields and enum values get the nearest
allowed name (``unknown field 'paramz' (did you mean 'params'?)``), bounds and types say
what was expected and what was found, and regex patterns are replaced by words. The
loader uses this for the workflow model, the resolver for each AIM's ``Params``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic

from aif.inputs.safe_yaml import kind_of as kind_of
from aif.workflow.model import (
    AIM_NAME_PATTERN,
    PORT_REF_PATTERN,
    WORKFLOW_NAME_PATTERN,
    Loc,
    SourceMap,
    format_loc,
)

#: Human words for the patterns of the model, used instead of the raw regex.
_PATTERN_WORDS = {
    WORKFLOW_NAME_PATTERN: "use lowercase letters, digits and '-'",
    AIM_NAME_PATTERN: "AIM names start with a lowercase letter, then lowercase letters, "
    "digits, '_' or '-'",
    PORT_REF_PATTERN: "write 'aim.port'",
}


def validation_problems(
    exc: pydantic.ValidationError, model: type[pydantic.BaseModel], prefix: Loc = ()
) -> list[tuple[Loc, str]]:
    """``(location, message)`` for each error of ``exc``, duplicates dropped.

    ``model`` is the model that was validated (for suggestions); ``prefix`` is where its
    data sits in the document (``("aims", "gen", "params")`` for an AIM's parameters).
    """
    found: dict[tuple[Loc, str], None] = {}
    for error in exc.errors(include_url=False):
        message, at = _describe(error, model, tuple(error["loc"]))
        found[((*prefix, *at), message)] = None
    return list(found)


def format_problems(problems: Iterable[tuple[Loc, str]], source_map: SourceMap) -> list[str]:
    """``file:line: path: message`` lines, in the order of the file (stable).

    A message that already starts with its path (as ``RecordType.check`` writes them:
    ``inputs.fc.in[0].frame: expected ...``) gets only ``file:line:`` in front.
    """
    ordered = sorted(problems, key=lambda item: source_map.line_of(item[0]) or 0)
    lines = []
    for loc, message in ordered:
        path = format_loc(loc)
        if path and message.startswith(path):
            lines.append(f"{source_map.at(loc)}: {message}")
        else:
            lines.append(f"{source_map.where(loc)}: {message}")
    return lines


def format_validation_errors(
    exc: pydantic.ValidationError,
    model: type[pydantic.BaseModel],
    source_map: SourceMap,
    prefix: Loc = (),
) -> list[str]:
    """One ``file:line: path: problem`` line per error of ``exc``, in file order."""
    return format_problems(validation_problems(exc, model, prefix), source_map)


def suggest(word: str, names: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the name ``word`` was most likely meant to be, or "".

    A name that ``word`` starts with (or that starts with ``word``) wins over a merely
    similar one: 'inprocess' means 'inproc' rather than 'process'.
    """
    prefixed = [n for n in names if n and (word.startswith(n) or n.startswith(word))]
    if word and prefixed:
        best = (
            max(prefixed, key=len)
            if any(word.startswith(n) for n in prefixed)
            else min(prefixed, key=len)
        )
        return f" (did you mean {best!r}?)"
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(error: Any, model: type[pydantic.BaseModel], loc: Loc) -> tuple[str, Loc]:
    """The message for one pydantic error, and the location it is best shown at."""
    kind: str = error["type"]
    value = error.get("input")
    ctx: dict[str, Any] = error.get("ctx") or {}
    is_key = bool(loc) and loc[-1] == "[key]"
    at = loc[:-1] if is_key else loc
    if kind == "extra_forbidden" and loc:
        allowed = _field_names(_model_at(model, loc[:-1]))
        return f"unknown field {loc[-1]!r}{_suggest(str(loc[-1]), allowed, 'fields')}", loc
    if kind == "missing" and loc:
        return f"missing required field {loc[-1]!r}", loc[:-1]
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _suggest(str(value), allowed, None)
        return f"{value!r} is not one of {', '.join(allowed)}{hint}", at
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"])), at
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        words = _PATTERN_WORDS.get(pattern, f"it must match {pattern}")
        what = "key" if is_key else "value"
        return f"{what} {value!r} is not allowed: {words}", at
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return f"expected a string, got the number {value!r}; quote it: '{value}'", at
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {kind_of(value)} {_short(value)}", at
    if kind == "list_type":
        hint = ""
        if len(loc) == 2 and loc[0] == "inputs":
            hint = f"; inputs are lists of records: write [{_short(value)}] for one record"
        return f"expected a list, got {kind_of(value)} {_short(value)}{hint}", at
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {kind_of(value)} {_short(value)}", at
    if kind == "too_short" and loc == ("aims",):
        return "a workflow needs at least one AIM", at
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "less_than_equal": ("at most", "le"),
        "greater_than": ("greater than", "gt"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}, got {value!r}", at
    msg = str(error["msg"])
    return f"{msg[:1].lower()}{msg[1:]}, got {kind_of(value)} {_short(value)}", at


_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
}


def _suggest(word: str, allowed: Sequence[str], noun: str | None) -> str:
    """`` (did you mean 'x'?)``, else ``; allowed <noun>: a, b`` (or nothing)."""
    hint = suggest(word, allowed)
    if hint:
        return hint
    if noun and allowed:
        return f"; allowed {noun}: {', '.join(allowed)}"
    return ""


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` so the walker sees the model or container."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            options = [arg for arg in get_args(tp) if arg is not type(None)]
            if len(options) != 1:
                return tp
            tp = options[0]
        else:
            return tp


def _model_at(model: type[pydantic.BaseModel], loc: Loc) -> type[pydantic.BaseModel] | None:
    """The model class that validates the data at ``loc`` below ``model``, if any."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
            found = None
            for name, info in tp.model_fields.items():
                if part in (name, info.validation_alias, info.alias):
                    found = info.annotation
                    break
            if found is None:
                return None
            tp = found
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) is list:
            tp = get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return tp
    return None


def _field_names(model: type[pydantic.BaseModel] | None) -> list[str]:
    """Field names as a user writes them (aliases where the model has them)."""
    if model is None:
        return []
    names = []
    for name, info in model.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        names.append(alias or name)
    return names


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
