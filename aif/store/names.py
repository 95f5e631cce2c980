"""Package names, versions and ``NAME@VERSION`` references: one place that says what is valid.

Names and versions become directory names in the Store and in the install cache, so
they are checked before they touch a path: a name is ``[a-z0-9][a-z0-9._-]{0,63}`` and a
version ``[0-9A-Za-z.+-]{1,32}`` (PEP 440 spellings fit), neither may be ``.``-only.
Versions order by PEP 440 when ``packaging`` is importable, else by numeric parts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aif.errors import StoreError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
VERSION_RE = re.compile(r"[0-9A-Za-z.+-]{1,32}")
#: The prefix of an AIM type installed from a Store: ``store:NAME@VERSION``.
STORE_PREFIX = "store:"
#: The environment variable that names the Store when no ``--store`` is given.
STORE_ENV = "AIF_STORE"
#: Suffix of a plain package archive and of an encrypted one.
ARCHIVE_SUFFIX = ".tar.gz"
ENCRYPTED_SUFFIX = ".tar.gz.aifenc"


def check_name(name: str) -> str:
    """``name`` if it is a valid package name, else StoreError saying the rule."""
    if not NAME_RE.fullmatch(name) or name.strip(".") == "":
        raise StoreError(
            f"package name {name!r} is not valid: use 1-64 lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (e.g. 'tiny-counter')"
        )
    return name


def check_version(version: str) -> str:
    """``version`` if it is a valid package version, else StoreError saying the rule."""
    if not VERSION_RE.fullmatch(version) or version.strip(".") == "":
        raise StoreError(
            f"package version {version!r} is not valid: use 1-32 letters, digits, '.', '+' "
            "or '-' (e.g. '1.0.0', '2.1rc1')"
        )
    return version


def parse_ref(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME@VERSION`` -> ``(name, version or None)``, both checked."""
    name, sep, version = text.strip().partition("@")
    if sep and not version:
        raise StoreError(f"package reference {text!r} has an empty version; write NAME@VERSION")
    return check_name(name), check_version(version) if sep else None


def format_ref(name: str, version: str) -> str:
    """The ``NAME@VERSION`` spelling used in messages, AAD and HPKE info."""
    return f"{name}@{version}"


def archive_file(name: str, version: str, *, encrypted: bool) -> str:
    """File name of a package in the Store: ``NAME-VERSION.tar.gz[.aifenc]``."""
    return f"{name}-{version}{ENCRYPTED_SUFFIX if encrypted else ARCHIVE_SUFFIX}"


def store_path(name: str, version: str, file: str) -> str:
    """Path of a package file relative to the Store root (``/`` separated, for URLs too)."""
    return f"packages/{name}/{version}/{file}"


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key of a version: PEP 440 order if ``packaging`` is there, else numeric parts."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging is in every venv with pip
        return _simple_key(version)
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, _simple_key(version))


def _simple_key(version: str) -> tuple[Any, ...]:
    parts = re.split(r"[.+-]", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def highest(versions: Iterable[str]) -> str | None:
    """The highest of ``versions`` (None when there are none)."""
    ordered = sorted(versions, key=version_key)
    return ordered[-1] if ordered else None
