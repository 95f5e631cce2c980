"""The MPAI Store: signed (optionally encrypted) packages of AIMs and AIWs.

- ``names``: package names, versions, ``NAME@VERSION``.
- ``archive``: deterministic tar.gz, safe unpacking of tar.gz and wheels, size limits.
- ``signing``: detached Ed25519 signature files and the basic/secure trust policy.
- ``package``: the package format, its manifest, encryption for recipients.
- ``index``: the Store's signed ``index.json``.
- ``publish``: building and adding packages to a Store directory.
- ``server`` / ``client``: serving a Store over HTTP, reading one from anywhere.
- ``install``: the install cache (``STATE_DIR/packages``) and loading AIMs from it.

- ``aim_types``: ``type: store:NAME@VERSION``, the Store's resolver of its own AIM types.

The formats are drawn in docs/store.md; the ``aif store`` commands are ``aif.cli.store``.
Public: the names in ``__all__`` (imported at once: ``install`` and ``publish`` are also
module names, and an eager import keeps the functions in front). May import:
``aif.workflow``, ``aif.aims`` and below.
"""

from aif.store.aim_types import StoreTypes
from aif.store.archive import DEFAULT_LIMITS, Limits
from aif.store.client import StoreClient, store_url
from aif.store.index import Index, IndexEntry
from aif.store.install import (
    InstalledPackage,
    InstallResult,
    check_installed,
    find_installed,
    install,
    list_installed,
    load_aim_class,
    resolve_installed,
)
from aif.store.names import format_ref, parse_ref
from aif.store.package import Manifest, verify_package
from aif.store.publish import Published, publish, publish_archive, publish_source
from aif.store.server import StoreServer
from aif.store.signing import Verified

__all__ = [
    "DEFAULT_LIMITS",
    "Index",
    "IndexEntry",
    "InstallResult",
    "InstalledPackage",
    "Limits",
    "Manifest",
    "Published",
    "StoreClient",
    "StoreServer",
    "StoreTypes",
    "Verified",
    "check_installed",
    "find_installed",
    "format_ref",
    "install",
    "list_installed",
    "load_aim_class",
    "parse_ref",
    "publish",
    "publish_archive",
    "publish_source",
    "resolve_installed",
    "store_url",
    "verify_package",
]
