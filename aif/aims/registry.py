"""Where AIM types come from: built-in short names, ``package.module:Class`` paths,
the ``aif.aims`` entry-point group (third-party plug-ins), and prefixed types such as
``store:NAME@VERSION`` whose resolver another package publishes.

Resolution order for a workflow's ``type``: a ``PREFIX:REF`` whose prefix a package
published in the ``aif.aim_type_prefixes`` entry-point group goes to that package
(the Store publishes ``store``: the registry knows nothing of it); any other ``:``
means a class path; otherwise a built-in short name, then an entry point of that name.
Nothing is imported until a name is resolved, so listing names stays cheap.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from aif.aims.base import AIM
from aif.errors import RegistryError

#: Entry-point group third-party packages use to publish AIMs.
ENTRY_POINT_GROUP = "aif.aims"

#: Entry-point group of prefixed-type resolvers: name ``PREFIX``, value a class that
#: follows :class:`PrefixedTypes` (aif's own pyproject publishes ``store``).
PREFIX_GROUP = "aif.aim_type_prefixes"


class PrefixedTypes(Protocol):
    """Resolves the AIM types of one prefix, e.g. the Store's ``store:NAME@VERSION``.

    The controller's side asks :meth:`aim_class` (it may fetch, and it decides trust
    under the workflow's profile); an AIM host asks :meth:`installed_class` (it only
    loads what the controller already accepted).
    """

    def aim_class(self, type_text: str, profile: str) -> tuple[type[AIM], list[str]]:
        """The class of ``type_text`` for a workflow of ``profile``, and any warnings."""
        ...

    def installed_class(self, type_text: str) -> type[AIM]:
        """The class of ``type_text`` as already installed here (never fetches)."""
        ...

    def code_problem(self, file: Path) -> str | None:
        """Why ``file`` (a module in this resolver's install cache) is not trusted now,
        or None; a secure run asks before it imports a user's model or data code."""
        ...


@functools.cache
def _prefix_factories() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=PREFIX_GROUP)}


def type_prefix(type_text: str) -> str | None:
    """The published prefix ``type_text`` starts with (``store`` for ``store:x@1``), or None."""
    prefix, colon, _ = type_text.partition(":")
    return prefix if colon and prefix in _prefix_factories() else None


def prefixed_types(prefix: str, state_dir: Path | None = None) -> PrefixedTypes:
    """The resolver a package published for ``prefix``, for ``state_dir`` (default: the
    default state directory); RegistryError when nothing published it."""
    value = _prefix_factories().get(prefix)
    if value is None:
        raise RegistryError(
            f"no installed package resolves AIM types '{prefix}:...'; is aif installed "
            "(pip install -e .), so that its entry points are registered?"
        )
    module_name, _, attr = value.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(
            f"the resolver of '{prefix}:' types ({value}) failed to load: {exc}"
        ) from exc
    resolver: PrefixedTypes = factory.default(state_dir)
    return resolver


_BUILTINS: dict[str, str] = {
    "source": "aif.aims.builtin:Source",
    "collect": "aif.aims.builtin:Collect",
    "relay": "aif.aims.builtin:Relay",
    "tensor-source": "aif.aims.builtin:TensorSource",
    "checksum": "aif.aims.builtin:Checksum",
    "record-file": "aif.aims.record_file:RecordFile",
    "digits-source": "aif.aims.analog.digits:DigitsSource",
    "analog-classifier": "aif.aims.analog.digits:AnalogClassifier",
    "experiment-source": "aif.aims.analog.experiments:ExperimentSource",
    "analog-validator": "aif.aims.analog.validator:AnalogValidator",
    "analog-simulator": "aif.aims.analog.simulator:AnalogSimulator",
    "analog-reporter": "aif.aims.analog.reporter:AnalogReporter",
}


def builtin_names() -> list[str]:
    """Short names of the AIMs that ship with aif."""
    return sorted(_BUILTINS)


def builtin_class_path(name: str) -> str:
    """The ``package.module:Class`` of built-in ``name`` (KeyError if it is none)."""
    return _BUILTINS[name]


@dataclass(frozen=True)
class PluginEntry:
    """An AIM type an installed package publishes in the ``aif.aims`` group (not loaded)."""

    name: str
    #: ``package.module:Class``, as the entry point says.
    value: str
    #: The distribution that publishes it (``aif-int8-accelerator``), or None if unknown.
    dist: str | None


def plugin_entries() -> list[PluginEntry]:
    """Every ``aif.aims`` entry point, by name, without importing any of them."""
    found = {
        ep.name: PluginEntry(ep.name, ep.value, ep.dist.name if ep.dist is not None else None)
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    }
    return [found[name] for name in sorted(found)]


def plugin_names() -> list[str]:
    """Names published by installed packages in the ``aif.aims`` entry-point group."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_class_path(path: str) -> type[AIM]:
    """Import ``package.module:Class`` and check that it is an AIM (RegistryError if not)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise RegistryError(f"AIM type {path!r} is not of the form 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(
            f"AIM type {path!r}: cannot import module {module_name!r} ({exc}); "
            "is the package installed in this environment?"
        ) from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            names = [n for n in dir(module) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise RegistryError(
                f"AIM type {path!r}: module {module_name!r} has no {part!r}{suggestion}"
            ) from exc
    if not (isinstance(obj, type) and issubclass(obj, AIM)):
        raise RegistryError(f"AIM type {path!r} is not a subclass of aif.AIM")
    return obj


@dataclass(frozen=True)
class Loaded:
    """An AIM class this process resolved, and where it came from (for attestation).

    ``source`` is ``aif`` (built in), ``plugin:NAME`` (an entry point), ``path`` (a
    ``package.module:Class`` type) or ``store:NAME@VERSION``; ``digest`` is set when
    the origin has one of its own (a Store package's archive digest).
    """

    cls: type[AIM]
    source: str
    digest: str | None = None


_LOADED: dict[str, Loaded] = {}


def loaded_types() -> dict[str, Loaded]:
    """Every AIM type this process has resolved so far, by the type text it was given."""
    return dict(_LOADED)


def record_loaded(type_text: str, loaded: Loaded) -> type[AIM]:
    """Note that ``type_text`` resolved to ``loaded.cls``; returns the class."""
    _LOADED[type_text] = loaded
    return loaded.cls


def resolve_aim_type(type_text: str, *, state_dir: Path | None = None) -> type[AIM]:
    """Turn a workflow's ``type`` into an AIM class, or say what is known instead.

    A prefixed type (``store:NAME@VERSION``) is loaded as already installed in
    ``state_dir`` (default: the default state directory): the workflow resolver, on
    the controller's side, fetched and verified it before any host asks for it here.
    """
    if (prefix := type_prefix(type_text)) is not None:
        return prefixed_types(prefix, state_dir).installed_class(type_text)
    if ":" in type_text:
        return record_loaded(type_text, Loaded(load_class_path(type_text), "path"))
    if type_text in _BUILTINS:
        return record_loaded(type_text, Loaded(load_class_path(_BUILTINS[type_text]), "aif"))
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=type_text):
        try:
            cls = ep.load()
        except Exception as exc:
            raise RegistryError(
                f"AIM type {type_text!r}: entry point {ep.value!r} failed to load: {exc}"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, AIM)):
            raise RegistryError(
                f"AIM type {type_text!r}: entry point {ep.value!r} is not a subclass of aif.AIM"
            )
        dist = ep.dist.name if ep.dist is not None else ep.value
        return record_loaded(type_text, Loaded(cls, f"plugin:{dist}"))
    known = builtin_names() + plugin_names()
    hint = difflib.get_close_matches(type_text, known, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise RegistryError(
        f"unknown AIM type {type_text!r}{suggestion}; known types: {', '.join(known)}; "
        "or give a class path 'package.module:ClassName'"
    )
