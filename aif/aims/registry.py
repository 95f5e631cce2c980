"""Where AIM types come from: built-in short names, ``package.module:Class`` paths,
and the ``aif.aims`` entry-point group (third-party plug-ins).

Resolution order for a workflow's ``type``: a ``:`` means a class path; otherwise a
built-in short name, then an entry point of that name. Nothing is imported until a
name is resolved, so listing names stays cheap.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from aif.aims.base import AIM
from aif.errors import RegistryError

#: Entry-point group third-party packages use to publish AIMs.
ENTRY_POINT_GROUP = "aif.aims"

_BUILTINS: dict[str, str] = {
    "source": "aif.aims.builtin:Source",
    "collect": "aif.aims.builtin:Collect",
    "relay": "aif.aims.builtin:Relay",
    "tensor-source": "aif.aims.builtin:TensorSource",
    "checksum": "aif.aims.builtin:Checksum",
    "digits-source": "aif.aims.digits:DigitsSource",
    "analog-classifier": "aif.aims.digits:AnalogClassifier",
    "experiment-source": "aif.aims.analog.experiments:ExperimentSource",
    "analog-validator": "aif.aims.analog.validator:AnalogValidator",
    "analog-simulator": "aif.aims.analog.simulator:AnalogSimulator",
    "analog-reporter": "aif.aims.reporter:AnalogReporter",
}


def builtin_names() -> list[str]:
    """Short names of the AIMs that ship with aif."""
    return sorted(_BUILTINS)


def plugin_names() -> list[str]:
    """Names published by installed packages in the ``aif.aims`` entry-point group."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def _load_class_path(path: str) -> type[AIM]:
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


def resolve_aim_type(type_text: str) -> type[AIM]:
    """Turn a workflow's ``type`` into an AIM class, or say what is known instead."""
    if ":" in type_text:
        return _load_class_path(type_text)
    if type_text in _BUILTINS:
        return _load_class_path(_BUILTINS[type_text])
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
        return cls
    known = builtin_names() + plugin_names()
    hint = difflib.get_close_matches(type_text, known, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise RegistryError(
        f"unknown AIM type {type_text!r}{suggestion}; known types: {', '.join(known)}; "
        "or give a class path 'package.module:ClassName'"
    )
