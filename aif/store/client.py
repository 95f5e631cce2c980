"""Reading a Store: a directory, a ``file://`` URL or an ``http(s)://`` URL.

The client moves bytes and checks nothing but sizes: every read has a limit enforced
while streaming (a server's Content-Length may lie). Signatures and the trust policy
are applied by :meth:`StoreClient.index` and by the installer.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aif.errors import ConfigError, StoreError, UnsafeArchive
from aif.store.archive import DEFAULT_LIMITS, Limits
from aif.store.index import INDEX_FILE, INDEX_SIG, MAX_INDEX_BYTES, Index, IndexEntry, verify_index
from aif.store.names import STORE_ENV, store_path
from aif.store.signing import MAX_SIGNATURE_BYTES, Verified

#: Environment variable naming the default Store (``--store``).
_CHUNK = 256 * 1024


def store_url(given: str | None) -> str:
    """``--store``, else ``$AIF_STORE``, else ConfigError saying how to set one."""
    url = given or os.environ.get(STORE_ENV)
    if not url:
        raise ConfigError(
            f"no Store given: pass --store URL_OR_DIR or set ${STORE_ENV} "
            "(a directory, file:///path or http://host:8765/ from `aif store serve`)"
        )
    return url


def _too_big(url: str, size: int, limit: int) -> UnsafeArchive:
    return UnsafeArchive(
        f"{url} is {size} bytes or more, over the download limit of {limit} bytes; refusing it"
    )


class StoreClient:
    """One Store, by directory path, ``file://`` URL or ``http(s)://`` URL."""

    def __init__(self, url: str, *, timeout: float = 30.0, limits: Limits = DEFAULT_LIMITS) -> None:
        self.url = url
        self.timeout = timeout
        self.limits = limits
        parts = urllib.parse.urlsplit(url)
        self._base: str | None = None
        self._root: Path | None = None
        if parts.scheme in ("http", "https"):
            self._base = url if url.endswith("/") else url + "/"
        elif parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ConfigError(f"{url}: a file:// Store must be on this machine (file:///path)")
            self._root = Path(urllib.request.url2pathname(parts.path))
        elif parts.scheme == "" or (len(parts.scheme) == 1 and os.name == "nt"):
            self._root = Path(url)
        else:
            raise ConfigError(
                f"Store {url!r}: unknown scheme {parts.scheme!r}; use a directory, "
                "file:///path or http(s)://host:port/"
            )
        if self._root is not None and not self._root.is_dir():
            raise StoreError(f"Store {url}: {self._root} is not a directory")

    def __repr__(self) -> str:
        return f"StoreClient({self.url!r})"

    def where(self, rel: str) -> str:
        """The URL or path of ``rel`` in this Store, for messages."""
        if self._base is not None:
            return self._base + urllib.parse.quote(rel)
        assert self._root is not None
        return str(self._root / rel)

    def read(self, rel: str, *, limit: int, missing_ok: bool = False) -> bytes | None:
        """The bytes of Store file ``rel`` (``/``-separated), at most ``limit`` of them.

        None when it does not exist and ``missing_ok``; StoreError naming it otherwise.
        """
        if self._base is not None:
            return self._read_http(rel, limit, missing_ok)
        assert self._root is not None
        root = self._root.resolve()
        path = root.joinpath(*rel.split("/"))
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            if missing_ok:
                return None
            raise StoreError(
                f"{path} does not exist; is {self.url} the Store you published to?"
            ) from exc
        if not resolved.is_relative_to(root) or not resolved.is_file():
            raise StoreError(f"{path} is not a file inside the Store {root}")
        with open(resolved, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise _too_big(str(path), size, limit)
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise _too_big(str(path), len(data), limit)
        return data

    def _read_http(self, rel: str, limit: int, missing_ok: bool) -> bytes | None:
        url = self.where(rel)
        request = urllib.request.Request(url, headers={"User-Agent": "aif-store-client"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise _too_big(url, int(declared), limit)
                chunks: list[bytes] = []
                total = 0
                while chunk := response.read(_CHUNK):
                    total += len(chunk)
                    if total > limit:
                        raise _too_big(url, total, limit)
                    chunks.append(chunk)
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                if missing_ok:
                    return None
                raise StoreError(
                    f"{url}: not found (HTTP 404); is {self._base} a Store (the URL "
                    "`aif store serve DIR` prints) and was the package published there?"
                ) from exc
            raise StoreError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreError(
                f"cannot reach the Store at {url}: {reason}; is `aif store serve` running "
                f"there? check --store or ${STORE_ENV}"
            ) from exc

    def index(
        self, *, trusted: Mapping[str, Ed25519PublicKey], require_trusted: bool
    ) -> tuple[Index, Verified]:
        """The Store's index, its signature checked under the trust policy."""
        raw = self.read(INDEX_FILE, limit=MAX_INDEX_BYTES, missing_ok=True)
        if raw is None:
            raise StoreError(
                f"{self.where(INDEX_FILE)} does not exist: {self.url} is not a Store, or "
                "nothing was published to it yet (`aif store publish SRC --store DIR`)"
            )
        sig = self.read(INDEX_SIG, limit=MAX_SIGNATURE_BYTES, missing_ok=True)
        return verify_index(
            raw,
            sig,
            trusted=trusted,
            require_trusted=require_trusted,
            where=self.where(INDEX_FILE),
        )

    def list(
        self, *, trusted: Mapping[str, Ed25519PublicKey], require_trusted: bool
    ) -> list[IndexEntry]:
        """Every package version the (verified) index lists."""
        return list(self.index(trusted=trusted, require_trusted=require_trusted)[0].packages)

    def fetch(self, entry: IndexEntry) -> tuple[bytes, bytes | None]:
        """The stored file of ``entry`` and its signature (None when it has none)."""
        rel = store_path(entry.name, entry.version, entry.file)
        if entry.size > self.limits.max_download:
            raise _too_big(self.where(rel), entry.size, self.limits.max_download)
        data = self.read(rel, limit=self.limits.max_download)
        assert data is not None
        sig = self.read(rel + ".sig", limit=MAX_SIGNATURE_BYTES, missing_ok=True)
        return data, sig
