"""aif.security.trust through KeyRing, on real files: trusted keys and CURVE endpoints."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import zmq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from aif.errors import ConfigError, KeyFileError
from aif.security.keys import KeyRing, curve_text, format_public_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    ring = KeyRing(tmp_path / "state")
    ring.init()
    return ring


# -- trusted keys ----------------------------------------------------------------------


def test_trust_untrust_round_trip(ring: KeyRing) -> None:
    alice = Ed25519PrivateKey.generate().public_key()
    alice_x = X25519PrivateKey.generate().public_key()
    bob_curve, _ = zmq.curve_keypair()
    ring.trust("alice@lab", format_public_key(alice))
    ring.trust("alice@lab", format_public_key(alice_x))
    added = ring.trust("bob.ci-1", curve_text(bob_curve))
    assert (added.name, added.kind, added.key) == ("bob.ci-1", "curve", bob_curve)
    assert mode(ring.trusted_path) == 0o600
    assert [(k.name, k.kind) for k in ring.trusted()] == [
        ("alice@lab", "ed25519"),
        ("alice@lab", "x25519"),
        ("bob.ci-1", "curve"),
    ]
    publishers = ring.publishers()
    assert list(publishers) == ["alice@lab"] and isinstance(
        publishers["alice@lab"], Ed25519PublicKey
    )
    assert format_public_key(publishers["alice@lab"]) == format_public_key(alice)
    assert isinstance(ring.recipients()["alice@lab"], X25519PublicKey)
    assert ring.clients() == {"bob.ci-1": bob_curve}

    newer = Ed25519PrivateKey.generate().public_key()
    ring.trust("alice@lab", format_public_key(newer))  # same name and kind: replaced
    assert format_public_key(ring.publishers()["alice@lab"]) == format_public_key(newer)
    assert len(ring.trusted()) == 3

    assert ring.untrust("alice@lab") == 2
    assert ring.untrust("alice@lab") == 0
    assert [k.name for k in ring.trusted()] == ["bob.ci-1"]
    assert KeyRing(ring.dir.parent).clients() == {"bob.ci-1": bob_curve}  # persisted


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "../etc", "name/with/slash", "é"])
def test_bad_names_are_refused_and_nothing_is_written(ring: KeyRing, name: str) -> None:
    key = format_public_key(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ConfigError, match="1 to 64 letters"):
        ring.trust(name, key)
    assert not ring.trusted_path.exists()


def test_a_bad_key_is_refused_and_the_file_is_unchanged(ring: KeyRing) -> None:
    ring.trust("alice", format_public_key(Ed25519PrivateKey.generate().public_key()))
    before = ring.trusted_path.read_bytes()
    with pytest.raises(ConfigError, match="accepted forms"):
        ring.trust("bob", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI")
    assert ring.trusted_path.read_bytes() == before
    assert sorted(os.listdir(ring.dir)) == ["identity.json", "trusted.json"]


def test_a_trusted_file_others_can_write_is_refused(ring: KeyRing) -> None:
    ring.trust("alice", format_public_key(Ed25519PrivateKey.generate().public_key()))
    os.chmod(ring.trusted_path, 0o666)
    with pytest.raises(KeyFileError, match=f"chmod 600 {ring.trusted_path}"):
        ring.trusted()


def test_a_malformed_trusted_entry_is_refused_naming_it(ring: KeyRing) -> None:
    ring.trust("alice", format_public_key(Ed25519PrivateKey.generate().public_key()))
    doc = json.loads(ring.trusted_path.read_text())
    doc["keys"].append({"name": "mallory", "key": "ed25519:short"})
    ring.trusted_path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="entry 1 is not a trusted key"):
        ring.publishers()


# -- endpoints of trusted CURVE keys ---------------------------------------------------


def test_a_curve_key_bound_to_an_endpoint_is_found_by_it(ring: KeyRing) -> None:
    server, _ = zmq.curve_keypair()
    added = ring.trust("gpu-box", curve_text(server), endpoint="TCP://GPU-Box.Lab:05570/")
    assert added.endpoint == "tcp://gpu-box.lab:5570"  # stored in its one form
    assert json.loads(ring.trusted_path.read_text())["keys"] == [
        {"name": "gpu-box", "key": curve_text(server), "endpoint": "tcp://gpu-box.lab:5570"}
    ]
    fresh = KeyRing(ring.dir.parent)
    for asked in ("tcp://gpu-box.lab:5570", "tcp://GPU-BOX.lab:5570//", " tcp://gpu-box.lab:5570"):
        assert fresh.server_key_for(asked) == server
    for other in ("tcp://gpu-box.lab:5571", "tcp://gpu-box:5570", "tcp://10.0.0.7:5570"):
        assert fresh.server_key_for(other) is None  # names are never resolved
    for not_tcp in ("ipc:///tmp/api.sock", "inproc://x", "tcp://*:5570", "gpu-box.lab:5570"):
        assert fresh.server_key_for(not_tcp) is None
    assert fresh.clients() == {"gpu-box": server}  # still a client key as well

    v6, _ = zmq.curve_keypair()
    ring.trust("local6", curve_text(v6), "tcp://[0:0:0:0:0:0:0:1]:6000")
    assert ring.server_key_for("tcp://[::1]:6000") == v6


def test_an_endpoint_with_another_kind_of_key_is_refused(ring: KeyRing) -> None:
    key = format_public_key(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ConfigError, match=r"only goes with a curve: key.*'alice' is an ed25519"):
        ring.trust("alice", key, endpoint="tcp://alice.lab:5570")
    assert not ring.trusted_path.exists()


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://host",
        "tcp://host:",
        "tcp://host:0",
        "tcp://host:65536",
        "tcp://host:55a0",
        "tcp://:5570",
        "tcp://*:5570",
        "tcp://a b:5570",
        "tcp://[nope]:5570",
        "udp://host:5570",
        "host:5570",
    ],
)
def test_a_bad_endpoint_is_refused_naming_the_form(ring: KeyRing, endpoint: str) -> None:
    server, _ = zmq.curve_keypair()
    with pytest.raises(ConfigError, match=r"use tcp://HOST:PORT"):
        ring.trust("gpu-box", curve_text(server), endpoint)
    assert not ring.trusted_path.exists()


def test_one_endpoint_binds_one_key(ring: KeyRing) -> None:
    first, second = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
    ring.trust("gpu-box", curve_text(first), "tcp://gpu-box.lab:5570")
    before = ring.trusted_path.read_bytes()
    with pytest.raises(ConfigError, match=r"already bound .* 'gpu-box'.*aif keys untrust gpu-box"):
        ring.trust("impostor", curve_text(second), "tcp://GPU-BOX.lab:5570")
    assert ring.trusted_path.read_bytes() == before
    ring.trust("gpu-box", curve_text(second), "tcp://gpu-box.lab:5570")  # a new key: replaced
    assert ring.server_key_for("tcp://gpu-box.lab:5570") == second
    ring.trust("gpu-box", curve_text(second))  # re-trusted without one: the binding goes
    assert ring.server_key_for("tcp://gpu-box.lab:5570") is None
    assert [k.endpoint for k in ring.trusted()] == [None]


def test_a_trusted_file_from_before_endpoints_still_loads(ring: KeyRing) -> None:
    signing = format_public_key(Ed25519PrivateKey.generate().public_key())
    server, _ = zmq.curve_keypair()
    entries = [{"name": "a", "key": signing}, {"name": "b", "key": curve_text(server)}]
    old = {"version": 1, "keys": entries}
    ring.trusted_path.write_text(json.dumps(old))
    os.chmod(ring.trusted_path, 0o600)
    assert [(k.name, k.kind, k.endpoint) for k in ring.trusted()] == [
        ("a", "ed25519", None),
        ("b", "curve", None),
    ]
    assert ring.server_key_for("tcp://b:1") is None
    ring.trust("b", curve_text(server), "tcp://b:1")  # and gains one
    assert ring.server_key_for("tcp://b:1") == server


def test_bad_endpoints_in_the_file_are_refused_naming_the_entry(ring: KeyRing) -> None:
    signing = format_public_key(Ed25519PrivateKey.generate().public_key())
    one, two = curve_text(zmq.curve_keypair()[0]), curve_text(zmq.curve_keypair()[0])
    cases = [
        ([{"name": "a", "key": signing, "endpoint": "tcp://a:1"}], "only curve keys have one"),
        ([{"name": "a", "key": one, "endpoint": "tcp://*:1"}], r"entry 0 \('a'\)"),
        (
            [
                {"name": "a", "key": one, "endpoint": "tcp://h:1"},
                {"name": "b", "key": two, "endpoint": "tcp://H:1/"},
            ],
            "'a' and 'b' are both bound to endpoint tcp://h:1",
        ),
    ]
    for keys, message in cases:
        ring.trusted_path.write_text(json.dumps({"version": 1, "keys": keys}))
        with pytest.raises(KeyFileError, match=message):
            ring.server_key_for("tcp://h:1")
