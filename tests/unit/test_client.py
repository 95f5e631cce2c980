"""The User API client refuses what cannot be an address, and says when no daemon is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from aif import Client, DaemonError
from aif.api import user as user_api
from aif.errors import JobNotFound, MalformedMessage


def test_an_address_that_is_not_one_is_refused() -> None:
    with pytest.raises(DaemonError, match="write ipc://PATH or tcp://HOST:PORT"):
        Client("localhost:7001")


def test_no_daemon_on_a_state_directory_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DaemonError, match="aif controller start"):
        Client(state_dir=tmp_path)


def test_a_call_that_gets_no_answer_times_out_with_advice(tmp_path: Path) -> None:
    with (
        Client(f"ipc://{tmp_path}/nobody", timeout=0.1) as client,
        pytest.raises(DaemonError, match=r"did not answer 'ping' within 0\.1 s"),
    ):
        client.ping()


def test_replies_become_the_errors_they_name() -> None:
    reply = user_api.error_reply(3, JobNotFound("no job 'x'"))
    with pytest.raises(JobNotFound, match="no job 'x'"):
        user_api.reply_result(user_api.unpack(user_api.pack(reply)), "ipc://x")
    with pytest.raises(MalformedMessage, match="not one"):
        user_api.reply_result([1, 2], "ipc://x")


def test_requests_name_their_wrong_fields() -> None:
    bad = user_api.pack({"op": "submit", "rid": 1, "text": "x", "priority": 5000})
    with pytest.raises(MalformedMessage, match="invalid User API request") as info:
        user_api.parse_request(bad)
    text = str(info.value)
    assert "priority" in text and "source" in text and "work_dir" in text
    with pytest.raises(MalformedMessage, match="not valid msgpack"):
        user_api.parse_request(b"\xc1")


def test_an_attest_request_needs_a_hex_nonce() -> None:
    bad = user_api.pack({"op": "attest", "rid": 1, "nonce": "not hex; rm -rf"})
    with pytest.raises(MalformedMessage, match="nonce"):
        user_api.parse_request(bad)
    good = user_api.parse_request(user_api.pack({"op": "attest", "rid": 2, "nonce": "ab" * 16}))
    assert isinstance(good, user_api.Attest)


def test_a_peer_host_request_names_a_malformed_server_key() -> None:
    fields = {"op": "peer.host", "rid": 1, "type": "relay", "name": "r", "workflow": "w"}
    bad = user_api.pack({**fields, "controller": "tcp://a:1", "server_key": "curve:short"})
    with pytest.raises(MalformedMessage, match="server_key"):
        user_api.parse_request(bad)
