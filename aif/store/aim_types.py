"""``type: store:NAME@VERSION``: AIMs that come from a Store.

The workflow resolver (on the controller's side) turns such a type into a class in
three steps: find the package in the install cache of the state directory, else fetch
it from the Store (``--store``, else ``$AIF_STORE``), verify its signature against the
trusted publishers, decrypt it if it is encrypted to us, and unpack it safely
(``aif.store.install``); then re-check its signature under the workflow's profile and
import it. The secure profile refuses a package that is unsigned or signed by a key
nobody trusted; the basic profile runs it with a warning.

An AIM host (in a child process, or ``aif aim serve`` elsewhere) only loads what is
already installed in its state directory: fetching and trusting is the controller's
decision, made once, before any host starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aif.aims.registry import Loaded, record_loaded
from aif.errors import PackageNotFound, StoreError
from aif.store.names import STORE_ENV, STORE_PREFIX

if TYPE_CHECKING:
    from aif.aims.base import AIM
    from aif.store.install import InstalledPackage


def package_ref(type_text: str) -> str:
    """``store:NAME@VERSION`` -> ``NAME@VERSION`` (StoreError when there is no name)."""
    ref = type_text[len(STORE_PREFIX) :]
    if not ref:
        raise StoreError(
            f"AIM type {type_text!r} names no package; write store:NAME@VERSION "
            "(or store:NAME for the highest version)"
        )
    return ref


def _loaded(type_text: str, installed: InstalledPackage, cls: type[AIM]) -> type[AIM]:
    return record_loaded(
        type_text, Loaded(cls, f"store:{installed.ref}", f"sha256:{installed.sha256}")
    )


@dataclass
class StoreTypes:
    """How one controller resolves ``store:`` types: its state directory and Store.

    It is the registry's resolver of the ``store`` prefix (``aif.aim_type_prefixes``
    in aif's pyproject), so neither the registry nor an AIM host imports the Store
    until a ``store:`` type is met.
    """

    state_dir: Path
    store: str | None = None

    @classmethod
    def default(cls, state_dir: Path | None = None, store: str | None = None) -> StoreTypes:
        """The default state directory and ``$AIF_STORE``, unless given."""
        from aif.storage.paths import default_state_dir

        return cls(
            state_dir if state_dir is not None else default_state_dir(),
            store or os.environ.get(STORE_ENV) or None,
        )

    def aim_class(self, type_text: str, profile: str) -> tuple[type[AIM], list[str]]:
        """The AIM class of ``type_text`` for a workflow of ``profile``, and any warnings."""
        from aif.security.keys import KeyRing
        from aif.store.install import install, load_aim_class, resolve_installed

        ref = package_ref(type_text)
        ring = KeyRing(self.state_dir)
        trusted = ring.publishers() if ring.dir.exists() else {}
        require = profile == "secure"
        try:
            cls, installed, warnings = resolve_installed(
                self.state_dir, ref, trusted=trusted, require_trusted=require
            )
            return _loaded(type_text, installed, cls), warnings
        except PackageNotFound as exc:
            if self.store is None:
                raise PackageNotFound(
                    f"{exc}; or name a Store to fetch it from: --store URL or ${STORE_ENV}"
                ) from exc
        from aif.store.client import StoreClient

        result = install(
            StoreClient(self.store),
            ref,
            self.state_dir,
            trusted=trusted,
            require_trusted=require,
            decrypt_key=lambda: ring.identity().exchange,
        )
        # Just verified (and warned about) by install(): load it as it now lies on disk.
        cls = load_aim_class(result.package)
        return _loaded(type_text, result.package, cls), result.warnings

    def installed_class(self, type_text: str) -> type[AIM]:
        """The class of an installed package, for an AIM host (it never fetches).

        The controller verified the package before it asked any host to load it; the
        host trusts its own state directory as the controller did.
        """
        from aif.store.install import find_installed, load_aim_class
        from aif.store.names import parse_ref

        name, version = parse_ref(package_ref(type_text))
        installed = find_installed(self.state_dir, name, version)
        return _loaded(type_text, installed, load_aim_class(installed))

    def code_problem(self, file: Path) -> str | None:
        """Why ``file``, a module under the install cache, is not to be trusted now.

        None when it is: the package holding it is still signed by a publisher trusted
        today and no file under its ``site/`` changed since it was installed (a deep
        check, so code edited in the cache is refused). A secure run's validator asks
        this before it imports a user's model or data factory from the cache.
        """
        from aif.errors import AIFError
        from aif.security.keys import KeyRing
        from aif.storage.paths import packages_dir
        from aif.store.install import check_installed, read_installed

        cache = packages_dir(self.state_dir).resolve()
        try:
            name, version = file.resolve().relative_to(cache).parts[:2]
        except ValueError:
            return f"{file} is not in the install cache {cache}"
        ring = KeyRing(self.state_dir)
        trusted = ring.publishers() if ring.dir.exists() else {}
        try:
            installed = read_installed(cache / name / version)
            check_installed(installed, trusted=trusted, require_trusted=True, deep=True)
        except AIFError as exc:
            return str(exc)
        return None
