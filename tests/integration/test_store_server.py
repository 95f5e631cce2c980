"""A Store served over real HTTP on 127.0.0.1: install through it, and what the server
and the client refuse (paths outside the Store, methods, sizes, missing files)."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif import AIM
from aif.errors import ConfigError, StoreError, UnsafeArchive
from aif.security.keys import Identity
from aif.store import Limits, StoreClient, StoreServer, install, load_aim_class, publish_source

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_imports")]

MODULE = "tiny_served_pkg"
ENTRY = f"{MODULE}:TinyServed"
AIM_SOURCE = '''"""A tiny AIM served over HTTP."""

from aif import AIM


class TinyServed(AIM):
    """Emits one record on ``out``."""

    outputs = {"out": "int64"}

    async def run(self) -> None:
        await self.send("out", 1)
'''


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.generate()


@pytest.fixture
def store(tmp_path: Path, alice: Identity) -> Path:
    src = tmp_path / "src"
    (src / MODULE).mkdir(parents=True)
    (src / MODULE / "__init__.py").write_text(AIM_SOURCE)
    path = tmp_path / "store"
    publish_source(path, src, alice.signing, aim=ENTRY)
    return path


@pytest.fixture
def server(store: Path) -> Iterator[StoreServer]:
    with StoreServer(store, "127.0.0.1:0").start() as running:
        yield running


def raw_get(server: StoreServer, path: str, method: str = "GET") -> http.client.HTTPResponse:
    """A request with ``path`` sent as written (no client-side normalisation)."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=5)
    connection.putrequest(method, path, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_install_over_http(tmp_path: Path, server: StoreServer, alice: Identity) -> None:
    client = StoreClient(server.url)
    trusted = {"alice": alice.signing.public_key()}
    assert [e.ref for e in client.list(trusted=trusted, require_trusted=True)] == [
        "tiny-served@1.0.0"
    ]
    result = install(client, "tiny-served", tmp_path / "state", trusted=trusted,
                     require_trusted=True)  # fmt: skip
    assert result.package.record.source == server.url
    assert issubclass(load_aim_class(result.package), AIM)


def test_server_serves_files_with_their_length(server: StoreServer, store: Path) -> None:
    response = raw_get(server, "/index.json")
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == (store / "index.json").stat().st_size
    head = raw_get(server, "/index.json", "HEAD")
    assert (
        head.status == 200 and head.headers["Content-Length"] == response.headers["Content-Length"]
    )


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/packages/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/packages",  # a directory: no listings
        "/",
        "/.publish.lock",  # dot-files stay private
        "/escape/secret.txt",  # a symbolic link out of the Store
        "/nothing-here",
    ],
)
def test_server_refuses_paths_outside_or_not_files(
    server: StoreServer, store: Path, tmp_path: Path, path: str
) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    (store / "escape").symlink_to(tmp_path)
    assert raw_get(server, path).status == 404


def test_server_allows_only_get_and_head(server: StoreServer) -> None:
    for method in ("POST", "PUT", "DELETE"):
        response = raw_get(server, "/index.json", method)
        assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"


def test_bad_bind_names_the_form(store: Path) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        StoreServer(store, "localhost")


# -- the client's errors ---------------------------------------------------------------


def test_unreachable_store_says_how_to_fix(store: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nobody listens there
    client = StoreClient(f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(StoreError, match=r"cannot reach the Store at http://127\.0\.0\.1"):
        client.list(trusted={}, require_trusted=False)


def test_missing_file_names_its_url(server: StoreServer, store: Path, tmp_path: Path) -> None:
    next(store.glob("packages/*/*/*.tar.gz")).unlink()
    with pytest.raises(StoreError, match=r"tiny-served-1\.0\.0\.tar\.gz: not found \(HTTP 404\)"):
        install(StoreClient(server.url), "tiny-served", tmp_path / "state", trusted={},
                require_trusted=False)  # fmt: skip
    assert not (tmp_path / "state" / "packages").exists()


def test_download_limit_is_enforced(server: StoreServer, tmp_path: Path) -> None:
    client = StoreClient(server.url, limits=Limits(max_download=100))
    with pytest.raises(UnsafeArchive, match="over the download limit of 100"):
        install(client, "tiny-served", tmp_path / "state", trusted={}, require_trusted=False)


def test_download_limit_holds_without_content_length() -> None:
    """A server that sends no length (or lies) is cut off while streaming."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            try:
                for _ in range(64):
                    connection.sendall(b"x" * 16384)
            except OSError:
                pass  # the client hung up once over its limit

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = StoreClient(f"http://127.0.0.1:{port}", timeout=5)
        with pytest.raises(UnsafeArchive, match="over the download limit of 10000"):
            client.read("index.json", limit=10_000)
    finally:
        thread.join(timeout=5)
        listener.close()


def test_download_limit_uses_the_content_length_first(server: StoreServer) -> None:
    with pytest.raises(UnsafeArchive, match=r"index\.json is \d+ bytes or more"):
        StoreClient(server.url).read("index.json", limit=10)
