"""CURVE helpers on real tcp sockets on 127.0.0.1: who gets in, who does not, and why.

Pins the two libzmq facts ``aif.security.curve`` is built around: a CURVE server with
no ZAP handler in its context lets anyone in (so ``curve_server`` refuses to run
without a Gatekeeper, and sets ``ZAP_ENFORCE_DOMAIN``), and a client with the wrong
server key never connects and is told nothing (so clients wait with a deadline).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from aif.errors import ConfigError, SecurityError
from aif.security.curve import (
    CurvePair,
    Gatekeeper,
    curve_client,
    curve_server,
    handshake_failure,
    key_text,
    parse_curve_key,
    plain,
)

DOMAIN = "aif-test"
WAIT = 0.3  # seconds a message that must not arrive is given


class Context(zmq.asyncio.Context):
    """Closes every socket it made at the end of the test (no ResourceWarning)."""

    made: list[Any]

    def socket(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        sock = super().socket(*args, **kwargs)
        sock.linger = 0
        self.made.append(sock)
        return sock


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = Context()
    context.made = []
    yield context
    Gatekeeper.stop_for(context)
    for sock in context.made:
        sock.close(linger=0)
    context.destroy(linger=0)


@pytest.fixture
def server_pair() -> CurvePair:
    return CurvePair.generate()


def server(ctx: zmq.asyncio.Context, pair: CurvePair, domain: str = DOMAIN) -> tuple[Any, str]:
    sock = ctx.socket(zmq.PULL)
    sock.linger = 0
    curve_server(sock, pair.secret, pair.public, domain)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, f"tcp://127.0.0.1:{port}"


def client(
    ctx: zmq.asyncio.Context, address: str, pair: CurvePair | None, server_key: bytes
) -> Any:
    sock = ctx.socket(zmq.PUSH)
    if pair is not None:
        curve_client(sock, pair.public, pair.secret, server_key)
    sock.connect(address)
    return sock


def watched_client(
    ctx: zmq.asyncio.Context, address: str, pair: CurvePair | None, server_key: bytes, events: int
) -> tuple[Any, Any]:
    """A client and its monitor, attached before it connects so no event is missed."""
    sock = ctx.socket(zmq.PUSH)
    if pair is not None:
        curve_client(sock, pair.public, pair.secret, server_key)
    monitor = sock.get_monitor_socket(events)
    sock.connect(address)
    return sock, monitor


async def arrives(sock: Any, timeout: float = WAIT) -> bytes | None:
    if await sock.poll(int(timeout * 1000)):
        frame: bytes = await sock.recv()
        return frame
    return None


async def handshake_events(
    monitor: Any, timeout: float, first: bool = False
) -> list[tuple[int, int]]:
    """The monitor's (event, value) pairs within ``timeout`` (``first``: the first one)."""
    events: list[tuple[int, int]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0 and not (first and events):
        if await monitor.poll(int(left * 1000) + 1):
            event = parse_monitor_message(await monitor.recv_multipart())
            events.append((event["event"], event["value"]))
    return events


async def test_a_trusted_client_connects_and_its_message_arrives(
    ctx: zmq.asyncio.Context, server_pair: CurvePair
) -> None:
    trusted = CurvePair.generate()
    Gatekeeper.of(ctx).allow(DOMAIN, {"alice": trusted.public})
    sock, address = server(ctx, server_pair)
    push = client(ctx, address, trusted, server_pair.public)
    await push.send(b"hello")
    assert await arrives(sock, 5.0) == b"hello"
    assert Gatekeeper.of(ctx).refused == []


async def test_an_unknown_client_is_refused_recorded_and_logged(
    ctx: zmq.asyncio.Context, server_pair: CurvePair, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = Gatekeeper.of(ctx)
    keeper.allow(DOMAIN, {"alice": CurvePair.generate().public})
    sock, address = server(ctx, server_pair)
    stranger = CurvePair.generate()
    push, monitor = watched_client(
        ctx, address, stranger, server_pair.public, zmq.EVENT_HANDSHAKE_FAILED_AUTH
    )
    with caplog.at_level(logging.WARNING, logger="aif.security"):
        await push.send(b"let me in")
        events = await handshake_events(monitor, 5.0, first=True)
        assert await arrives(sock) is None
    assert (DOMAIN, key_text(stranger.public)) in keeper.refused
    [record] = [r for r in caplog.records if r.name == "aif.security"]
    assert DOMAIN in record.getMessage()
    assert key_text(stranger.public) in record.getMessage()
    assert f"aif keys trust NAME '{key_text(stranger.public)}'" in record.getMessage()
    # The client learns that it was refused, and why.
    assert events and events[0][0] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    why = handshake_failure(*events[0], address, curve=True)
    assert why is not None and "not trusted there" in why and "aif keys trust" in why


async def test_a_wrong_server_key_never_connects_and_says_so_in_bounded_time(
    ctx: zmq.asyncio.Context, server_pair: CurvePair
) -> None:
    trusted = CurvePair.generate()
    keeper = Gatekeeper.of(ctx)
    keeper.allow(DOMAIN, {"alice": trusted.public})
    sock, address = server(ctx, server_pair)
    events_wanted = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    someone_else = CurvePair.generate().public
    push, monitor = watched_client(ctx, address, trusted, someone_else, events_wanted)
    await push.send(b"hello?")
    events = await handshake_events(monitor, 1.0)
    assert await arrives(sock, 0.1) is None
    kinds = {kind for kind, _ in events}
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in kinds
    assert zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL in kinds
    why = handshake_failure(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 0, address, curve=True)
    assert why is not None and "server key is wrong" in why
    assert keeper.refused == []  # the server never got as far as asking the Gatekeeper


async def test_a_plain_client_cannot_talk_to_a_curve_server(
    ctx: zmq.asyncio.Context, server_pair: CurvePair
) -> None:
    Gatekeeper.of(ctx).allow(DOMAIN, {"alice": CurvePair.generate().public})
    sock, address = server(ctx, server_pair)
    push, monitor = watched_client(ctx, address, None, b"", zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
    await push.send(b"plain")
    events = await handshake_events(monitor, 5.0, first=True)
    assert await arrives(sock, 0.1) is None
    assert events, "libzmq reports a mechanism mismatch to the plain client"
    why = handshake_failure(*events[0], address, curve=False)
    assert why is not None and "--server-key" in why


async def test_without_a_zap_handler_libzmq_lets_anyone_in_so_curve_server_refuses(
    ctx: zmq.asyncio.Context, server_pair: CurvePair
) -> None:
    # The trap: a CURVE server configured by hand, in a context with no ZAP handler...
    raw = ctx.socket(zmq.PULL)
    raw.linger = 0
    raw.curve_server = True
    raw.curve_secretkey, raw.curve_publickey = server_pair.secret, server_pair.public
    raw.zap_domain = DOMAIN.encode()
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    anyone = client(ctx, f"tcp://127.0.0.1:{port}", CurvePair.generate(), server_pair.public)
    await anyone.send(b"in")
    assert await arrives(raw, 5.0) == b"in"  # ...accepts a client nobody trusted
    # curve_server will not configure a socket nobody checks.
    sock = ctx.socket(zmq.PULL)
    sock.linger = 0
    with pytest.raises(SecurityError, match="no Gatekeeper"):
        curve_server(sock, server_pair.secret, server_pair.public, DOMAIN)
    # Nor a domain the Gatekeeper does not check.
    Gatekeeper.of(ctx).allow("other", {})
    with pytest.raises(SecurityError, match=DOMAIN):
        curve_server(sock, server_pair.secret, server_pair.public, DOMAIN)


async def test_a_server_whose_gatekeeper_stopped_refuses_rather_than_admits(
    ctx: zmq.asyncio.Context, server_pair: CurvePair
) -> None:
    trusted = CurvePair.generate()
    Gatekeeper.of(ctx).allow(DOMAIN, {"alice": trusted.public})
    sock, address = server(ctx, server_pair)
    Gatekeeper.stop_for(ctx)  # ZAP_ENFORCE_DOMAIN: no handler now means no entry
    push = client(ctx, address, trusted, server_pair.public)
    await push.send(b"hello")
    assert await arrives(sock) is None


async def test_a_domain_stays_open_until_its_last_holder_forgets_it(
    ctx: zmq.asyncio.Context, server_pair: CurvePair
) -> None:
    trusted = CurvePair.generate()
    keeper = Gatekeeper.of(ctx)
    assert Gatekeeper.of(ctx) is keeper  # one per context
    keeper.allow(DOMAIN, {"run": trusted.public})
    keeper.allow(DOMAIN, {"run": trusted.public})
    sock, address = server(ctx, server_pair)
    keeper.forget(DOMAIN)
    assert keeper.allowed(DOMAIN) == {"run": trusted.public}
    await client(ctx, address, trusted, server_pair.public).send(b"one")
    assert await arrives(sock, 5.0) == b"one"
    keeper.forget(DOMAIN)
    assert DOMAIN not in keeper.domains
    await client(ctx, address, trusted, server_pair.public).send(b"two")
    assert await arrives(sock) is None
    assert (DOMAIN, key_text(trusted.public)) in keeper.refused


async def test_reload_replaces_the_list_of_an_open_domain(
    ctx: zmq.asyncio.Context, server_pair: CurvePair
) -> None:
    first, second = CurvePair.generate(), CurvePair.generate()
    keeper = Gatekeeper.of(ctx)
    keeper.allow(DOMAIN, {"first": first.public})
    sock, address = server(ctx, server_pair)
    keeper.reload(DOMAIN, {"second": second.public})
    await client(ctx, address, first, server_pair.public).send(b"first")
    await client(ctx, address, second, server_pair.public).send(b"second")
    assert await arrives(sock, 5.0) == b"second"
    assert await arrives(sock) is None
    with pytest.raises(SecurityError, match="not open"):
        keeper.reload("closed", {})


async def test_endpoints_bound_before_and_after_curve_stay_plain(
    ctx: zmq.asyncio.Context, server_pair: CurvePair, tmp_path: Path
) -> None:
    trusted = CurvePair.generate()
    Gatekeeper.of(ctx).allow(DOMAIN, {"alice": trusted.public})
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(f"ipc://{tmp_path}/before")
    curve_server(router, server_pair.secret, server_pair.public, DOMAIN)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    plain(router)
    router.bind(f"ipc://{tmp_path}/after")
    for address, pair in [
        (f"ipc://{tmp_path}/before", None),
        (f"ipc://{tmp_path}/after", None),
        (f"tcp://127.0.0.1:{port}", trusted),
    ]:
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        if pair is not None:
            curve_client(dealer, pair.public, pair.secret, server_pair.public)
        dealer.connect(address)
        await dealer.send(address.encode())
        assert await router.poll(5000), address
        frames = await router.recv_multipart(copy=False)
        assert frames[1].bytes == address.encode()
        # libzmq hands the authenticated key to the server with each message.
        expected = key_text(trusted.public)[6:] if pair is not None else None
        if expected is not None:
            assert frames[1].get("User-Id") == expected
        dealer.close()


def test_key_texts_parse_and_bad_ones_are_refused_naming_the_form() -> None:
    pair = CurvePair.generate()
    assert parse_curve_key(key_text(pair.public)) == pair.public
    assert parse_curve_key(pair.public.decode()) == pair.public
    assert "secret" not in repr(pair) or pair.secret.decode() not in repr(pair)
    for bad in ["curve:short", "ed25519:" + "A" * 43, "curve:" + "~" * 40, ""]:
        with pytest.raises(ConfigError, match="aif keys show"):
            parse_curve_key(bad)


def test_a_tcp_client_finds_the_daemon_key_in_the_local_controller_json(tmp_path: Path) -> None:
    from aif.daemon.client import DAEMON_FILE, client_keys, server_key_of

    server, me = CurvePair.generate(), CurvePair.generate()
    (tmp_path / DAEMON_FILE).write_text(
        json.dumps(
            {"pid": 1, "api": ["ipc:///x", "tcp://0.0.0.0:7001"], "curve": key_text(server.public)}
        )
    )
    assert server_key_of("tcp://127.0.0.1:7001", tmp_path) == server.public
    assert server_key_of("tcp://localhost:7001", tmp_path) == server.public
    assert server_key_of("tcp://127.0.0.1:7002", tmp_path) is None  # another daemon
    keys = client_keys("tcp://localhost:7001", tmp_path, identity=me)
    assert keys is not None and keys.server_key == server.public and keys.pair == me
    # An explicit key wins; ipc is always plain; no key known means plain tcp.
    other = CurvePair.generate().public
    explicit = client_keys("tcp://h:1", tmp_path, key_text(other), identity=me)
    assert explicit is not None and explicit.server_key == other
    assert client_keys("ipc:///x", tmp_path, key_text(other), identity=me) is None
    assert client_keys("tcp://h:1", tmp_path, identity=me) is None
    with pytest.raises(ConfigError, match="--server-key"):
        client_keys("tcp://h:1", tmp_path, "curve:nope", identity=me)
