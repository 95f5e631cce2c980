"""What an AIM type declares, read from its class: the one source of ``aif aim list``,
``aif aim show`` and ``docs/aims.md``.

:func:`describe` turns an AIM class into an :class:`AIMTypeInfo` (ports and their record
types, parameters with defaults, queues, whether it measures capabilities, where the
type comes from); :func:`available` lists every type this environment offers without
failing on a broken plug-in; :func:`reference_markdown` writes ``docs/aims.md`` (the
AIM API a hardware AIM uses, the events it reads, and the built-in AIMs), which a test
regenerates and compares.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import pydantic
from pydantic_core import PydanticUndefined

from aif.aims.base import AIM
from aif.aims.registry import (
    builtin_class_path,
    builtin_names,
    load_class_path,
    plugin_entries,
)
from aif.communication.ports import Record, Signal, Stop
from aif.errors import RegistryError


@dataclass(frozen=True)
class PortInfo:
    """One port: its name, ``input`` or ``output``, and its MPAI-AIF record type."""

    name: str
    direction: str
    type: str


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of an AIM's ``Params`` model."""

    name: str
    type: str
    required: bool
    #: The default as JSON would hold it (None when required).
    default: Any
    description: str


@dataclass(frozen=True)
class AIMTypeInfo:
    """What an AIM type declares, and where it comes from.

    ``origin`` is ``built-in``, ``entry point NAME from DIST``, ``class path`` or
    ``Store package NAME@VERSION``; ``error`` is set (and the declarations empty) when the
    type is listed but its class does not load.
    """

    type: str
    origin: str
    class_path: str
    description: str = ""
    ports: tuple[PortInfo, ...] = ()
    params: tuple[ParamInfo, ...] = ()
    #: The daemon queues a job with this AIM runs in (``queues``), preferred first.
    queues: tuple[str, ...] = ()
    #: True when ``resources(params)`` is overridden: the queues depend on the params.
    queues_from_params: bool = False
    #: The first line of ``capabilities()``'s docstring when the class overrides it.
    capabilities: str | None = None
    drain_on_stop: bool = False
    technology: str = "Software"
    version: str = ""
    implementer: str = ""
    params_schema: dict[str, Any] | None = field(default=None, repr=False)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain dict (``aif aim show --json``)."""
        return asdict(self)


def _type_text(annotation: Any) -> str:
    """A readable spelling of a parameter's annotation (``list[int]``, ``str | None``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if annotation is type(None):
        return "None"
    if annotation is typing.Any:
        return "Any"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_text(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def _jsonable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def params_of(model: type[pydantic.BaseModel] | None) -> tuple[ParamInfo, ...]:
    """The fields of a ``Params`` model, in declaration order."""
    if model is None:
        return ()
    out = []
    for name, info in model.model_fields.items():
        required = info.is_required()
        default = None
        if not required:
            value = info.get_default(call_default_factory=True)
            default = None if value is PydanticUndefined else _jsonable(value)
        out.append(
            ParamInfo(
                name=info.alias or name,
                type=_type_text(info.annotation),
                required=required,
                default=default,
                description=" ".join((info.description or "").split()),
            )
        )
    return tuple(out)


def _overrides(cls: type[AIM], name: str) -> bool:
    mine = inspect.getattr_static(cls, name)
    base = inspect.getattr_static(AIM, name)
    return getattr(mine, "__func__", mine) is not getattr(base, "__func__", base)


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _capabilities(cls: type[AIM]) -> str | None:
    """What the class says of its ``capabilities()``, None when it does not declare any."""
    if not _overrides(cls, "capabilities"):
        return None
    own = inspect.getattr_static(cls, "capabilities").__doc__
    said = " ".join((own or "").split("\n\n", 1)[0].split())
    return said or "measured where it runs, after setup, and declared at registration"


def describe(cls: type[AIM], type_text: str, origin: str) -> AIMTypeInfo:
    """What ``cls`` declares, under the ``type`` a workflow names it by."""
    ports = [PortInfo(n, "input", t) for n, t in cls.inputs.items()]
    ports += [PortInfo(n, "output", t) for n, t in cls.outputs.items()]
    schema: dict[str, Any] | None = None
    if cls.Params is not None:
        try:
            schema = cls.Params.model_json_schema()
        except Exception:  # a field pydantic cannot draw: the table below still says it
            schema = None
    return AIMTypeInfo(
        type=type_text,
        origin=origin,
        class_path=cls.class_path(),
        description=cls.description(),
        ports=tuple(ports),
        params=params_of(cls.Params),
        queues=tuple(cls.queues),
        queues_from_params=_overrides(cls, "resources"),
        capabilities=_capabilities(cls),
        drain_on_stop=cls.drain_on_stop,
        technology=cls.technology,
        version=cls.version,
        implementer=cls.implementer,
        params_schema=schema,
    )


def _broken(type_text: str, origin: str, class_path: str, exc: Exception) -> AIMTypeInfo:
    return AIMTypeInfo(type_text, origin, class_path, error=f"{type(exc).__name__}: {exc}")


def builtins() -> list[AIMTypeInfo]:
    """The AIMs that ship with aif under a short name."""
    out = []
    for name in builtin_names():
        path = builtin_class_path(name)
        try:
            out.append(describe(load_class_path(path), name, "built-in"))
        except Exception as exc:
            out.append(_broken(name, "built-in", path, exc))
    return out


def plugins() -> list[AIMTypeInfo]:
    """The AIMs installed packages publish in the ``aif.aims`` entry-point group."""
    out = []
    for entry in plugin_entries():
        origin = f"entry point {entry.name} from {entry.dist or 'an unknown package'}"
        try:
            out.append(describe(load_class_path(entry.value), entry.name, origin))
        except Exception as exc:  # one broken plug-in must not hide the others
            out.append(_broken(entry.name, origin, entry.value, exc))
    return out


def available() -> list[AIMTypeInfo]:
    """Every AIM type available by name here: built-ins, then entry points."""
    return builtins() + plugins()


def describe_type(type_text: str) -> AIMTypeInfo:
    """The AIM type a workflow would name ``type_text``: a built-in, an entry point or a
    class path (RegistryError when it is none of them, or does not load)."""
    if type_text in builtin_names():
        return describe(load_class_path(builtin_class_path(type_text)), type_text, "built-in")
    for entry in plugin_entries():
        if entry.name == type_text:
            origin = f"entry point {entry.name} from {entry.dist or 'an unknown package'}"
            return describe(load_class_path(entry.value), type_text, origin)
    if ":" in type_text:
        return describe(load_class_path(type_text), type_text, "class path")
    raise RegistryError(
        f"unknown AIM type {type_text!r}; `aif aim list` shows every known type, or give a "
        "class path 'package.module:ClassName'"
    )


# -- docs/aims.md ------------------------------------------------------------------------

#: The AIM API a hardware AIM uses, in the order the reference lists it.
API_MEMBERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Declarations (class attributes)",
        (
            "inputs",
            "outputs",
            "Params",
            "technology",
            "implementer",
            "version",
            "queues",
            "drain_on_stop",
        ),
    ),
    ("Declarations (class methods)", ("resources", "description", "class_path")),
    (
        "Lifecycle (override)",
        ("setup", "capabilities", "run", "on_suspend", "on_resume", "teardown"),
    ),
    (
        "What an AIM calls",
        ("events", "send", "send_signal", "peers", "checkpoint", "progress", "result"),
    ),
    (
        "What an AIM reads",
        (
            "params",
            "log",
            "name",
            "workflow",
            "stopping",
            "work_dir",
            "base_dir",
            "state_dir",
            "storage",
            "global_storage",
            "secure",
        ),
    ),
)

#: Members set in ``__init__``, which have no docstring of their own.
_INSTANCE_DOCS = {
    "params": "The validated ``Params`` model of this instance (None without ``Params``).",
    "log": "A logger named ``aif.aim.<name>``: its INFO lines show in ``aif run``, "
    "prefixed by the AIM's name.",
}


def _attribute_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comments above class attributes in ``cls``'s source."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match and pending:
            docs[match.group(1)] = " ".join(pending)
        pending = []
    return docs


def _signature(name: str, obj: Any) -> str:
    if isinstance(obj, classmethod | staticmethod):
        obj = obj.__func__
    if not callable(obj) or isinstance(obj, type):
        return f"`{name}`"
    shown = [
        f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name
        for p in inspect.signature(obj).parameters.values()
        if p.name not in ("self", "cls")
    ]
    prefix = "await " if inspect.iscoroutinefunction(obj) else ""
    return f"`{prefix}{name}({', '.join(shown)})`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def api_rows() -> Iterable[tuple[str, list[tuple[str, str]]]]:
    """(section, [(member, doc)]) for the AIM API table, read from ``aif.aims.base.AIM``."""
    attributes = _attribute_docs(AIM)
    for section, names in API_MEMBERS:
        rows = []
        for name in names:
            raw = inspect.getattr_static(AIM, name, None)
            if name in _INSTANCE_DOCS:
                doc = _INSTANCE_DOCS[name]
            elif name in attributes:
                doc = attributes[name]
            else:
                target = raw.fget if isinstance(raw, property) else raw
                target = getattr(target, "__func__", target)
                doc = " ".join((inspect.getdoc(target) or "").split("\n\n", 1)[0].split())
            label = (
                f"`{name}`" if isinstance(raw, property) or raw is None else _signature(name, raw)
            )
            rows.append((label, doc))
        yield section, rows


def _event_rows() -> list[tuple[str, str, str]]:
    out = []
    for cls in (Record, Signal, Stop):
        assert is_dataclass(cls)
        names = ", ".join(f"`{f.name}`" for f in fields(cls) if f.name != "kind")
        out.append((f"`{cls.__name__}`", names, _first_line(cls)))
    return out


def _default_text(param: ParamInfo) -> str:
    if param.required:
        return "required"
    return f"`{json.dumps(param.default)}`"


def type_markdown(info: AIMTypeInfo, level: str = "###") -> list[str]:
    """One AIM type as a Markdown section (the reference, and ``aif aim show --markdown``)."""
    lines = [f"{level} `{info.type}`", "", info.description, ""]
    lines.append(f"Class `{info.class_path}` ({info.origin}); technology {info.technology}.")
    extra = []
    if info.queues or info.queues_from_params:
        queues = ", ".join(info.queues) or "none"
        extra.append(
            f"Daemon queues: {queues}"
            + (" (the params may choose others)" if info.queues_from_params else "")
        )
    if info.capabilities:
        extra.append(f"Capabilities: {info.capabilities}")
    if info.drain_on_stop:
        extra.append("Drains its inputs on stop (keeps partial results).")
    lines += [*(f"{e}." if not e.endswith(".") else e for e in extra), ""]
    if info.ports:
        lines += ["| port | direction | record type |", "|---|---|---|"]
        lines += [f"| `{p.name}` | {p.direction} | `{_cell(p.type)}` |" for p in info.ports]
        lines.append("")
    if info.params:
        lines += ["| param | type | default | description |", "|---|---|---|---|"]
        for p in info.params:
            cells = [f"`{p.name}`", f"`{_cell(p.type)}`", _cell(_default_text(p))]
            lines.append(f"| {' | '.join(cells)} | {_cell(p.description)} |")
    else:
        lines.append("No parameters.")
    lines.append("")
    return lines


def reference_markdown() -> str:
    """``docs/aims.md``: the AIM API and the AIMs that ship with aif, from the code."""
    lines = [
        "# AIM reference",
        "",
        "<!-- Generated from the code by `aif aim list --markdown`; "
        "tests/unit/test_aim_catalog.py fails when it drifts. Do not edit by hand. -->",
        "",
        "What an AIM (`aif.AIM`) declares and calls, read from `aif/aims/base.py`, and every",
        "AIM that ships with aif: its ports with their record types (MPAI-AIF type grammar),",
        "its parameters with their defaults. `aif aim list` and `aif aim show TYPE` say the",
        "same of whatever is installed, plug-ins included. docs/plugging-in-hardware.md walks",
        "through writing one.",
        "",
        "## The AIM API",
        "",
    ]
    for section, rows in api_rows():
        lines += [f"### {section}", "", "| member | what it is |", "|---|---|"]
        lines += [f"| {label} | {_cell(doc)} |" for label, doc in rows]
        lines.append("")
    lines += [
        "### Events (`async for event in self.events()`)",
        "",
        "| event | fields | what it is |",
        "|---|---|---|",
        *(f"| {n} | {f} | {_cell(d)} |" for n, f, d in _event_rows()),
        "",
        "## AIMs that ship with aif",
        "",
    ]
    shipped = builtins() + [p for p in plugins() if p.origin.endswith(" from aif")]
    for info in shipped:
        lines += type_markdown(info)
    return "\n".join(lines).rstrip() + "\n"
