"""The secure profile's rule for a user's code in an experiment: only from the Store.

``model: {torch: package.module:Factory}`` and ``dataset: {name: torch, factory: ...}``
run the user's Python. The basic profile trusts the simulator's environment (as it
trusts a class-path AIM); a ``profile: secure`` run trusts only code that came in a
signed Store package: a module counts as Store-provided when the file an import would
load lies under the install cache, ``STATE_DIR/packages/`` (:mod:`aif.store.install`,
which verified the package's signature when it installed it), and the package still
passes the Store's check now: its signer is trusted today and no file under its
``site/`` changed since the install (the Store's resolver answers through the registry's
prefix seam, so this module imports nothing of the Store).

The file is located without running anything (``importlib.machinery.PathFinder`` on
``sys.path``, then on the installed packages' ``site/`` folders, which
:func:`aif.store.install.load_aim_class` also puts last on ``sys.path``), so code that
is not trusted is never imported. A module found only in an installed package gets its
``site/`` appended to ``sys.path`` here, so the validator's checks can import it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from aif.aims.registry import prefixed_types
from aif.storage.paths import installed_sites, packages_dir

Problem = tuple[str, str]
_FIX = (
    "a secure run trusts only code from a signed Store package: publish the module as a "
    "Store package and install it (aif store install, see docs/store.md)"
)


def code_fields(raw: Mapping[str, Any]) -> dict[str, str]:
    """``{field path: package.module:Name}`` of the user's code an experiment calls."""
    found = {}
    model, dataset = raw.get("model"), raw.get("dataset")
    if isinstance(model, Mapping) and isinstance(model.get("torch"), str):
        found["model.torch"] = model["torch"]
    if isinstance(dataset, Mapping) and isinstance(dataset.get("factory"), str):
        found["dataset.factory"] = dataset["factory"]
    return found


def module_file(name: str, search: list[str]) -> Path | None:
    """The file importing ``name`` would run, found in ``search`` without importing."""
    parts = name.split(".")
    path, origin = search, None
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
        origin = spec.origin
    return Path(origin).resolve() if origin else None


def untrusted_code(raw: Mapping[str, Any], state_dir: Path) -> list[Problem]:
    """A problem per ``torch``/``factory`` module not loaded from the install cache."""
    fields = code_fields(raw)
    if not fields:
        return []
    cache = packages_dir(state_dir).resolve()
    sites = [str(site) for site in installed_sites(state_dir)] if cache.is_dir() else []
    problems = []
    for where, target in fields.items():
        module = target.partition(":")[0]
        found = module_file(module, [*sys.path, *sites])
        if found is None:
            problems.append((where, f"module {module!r} is in no installed Store package; {_FIX}"))
            continue
        if not found.is_relative_to(cache):
            problems.append(
                (where, f"module {module!r} is imported from the environment ({found}); {_FIX}")
            )
            continue
        reason = prefixed_types("store", state_dir).code_problem(found)
        if reason is not None:  # no longer signed by a trusted publisher, or edited
            problems.append((where, f"module {module!r} is not trusted: {reason}"))
            continue
        for site in sites:  # found in an installed package's site/: importable as found
            if found.is_relative_to(Path(site).resolve()) and site not in sys.path:
                sys.path.append(site)
    return problems


def importable_store_code(state_dir: Path) -> None:
    """Make the code of every installed Store package importable here (appended last to
    ``sys.path``, as :func:`aif.store.install.load_aim_class` does for AIMs): a secure
    run's simulator builds the models and data the validator accepted from them."""
    for site in installed_sites(state_dir):
        if str(site) not in sys.path:
            sys.path.append(str(site))
