"""The tcp address rules a remote host lives by: parse, bind where the peer is, dial back."""

from __future__ import annotations

import pytest

from aif import ChannelError
from aif.communication.addresses import dialable, facing_interface, new_address, tcp_host


@pytest.mark.parametrize(
    ("address", "host"),
    [("tcp://127.0.0.1:5555", "127.0.0.1"), ("tcp://lab-pc.local:1", "lab-pc.local")],
)
def test_tcp_host(address: str, host: str) -> None:
    assert tcp_host(address) == host


@pytest.mark.parametrize("address", ["127.0.0.1:5555", "tcp://127.0.0.1", "tcp://:5555"])
def test_a_malformed_tcp_address_names_the_right_form(address: str) -> None:
    with pytest.raises(ChannelError, match="write it as tcp://HOST:PORT"):
        tcp_host(address)


def test_a_socket_on_every_interface_is_dialled_where_its_machine_was_reached() -> None:
    via = "tcp://10.0.0.5:5555"
    assert dialable("tcp://0.0.0.0:4321", via) == "tcp://10.0.0.5:4321"
    assert dialable("tcp://192.168.1.9:4321", via) == "tcp://192.168.1.9:4321"
    assert dialable("ipc:///tmp/aif-x/in", via) == "ipc:///tmp/aif-x/in"
    assert dialable("tcp://0.0.0.0:4321", "ipc:///tmp/aif-x/api") == "tcp://0.0.0.0:4321"


def test_readers_bind_the_interface_that_faces_the_peer() -> None:
    assert facing_interface("tcp://127.0.0.1:5555") == "127.0.0.1"
    assert new_address("tcp", "x", None, facing_interface("tcp://localhost:9")) == (
        "tcp://127.0.0.1:*"
    )
    with pytest.raises(ChannelError, match=r"no route from this machine to tcp://127.0.0.1:99999"):
        facing_interface("tcp://127.0.0.1:99999")
