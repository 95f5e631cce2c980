"""The User API's bounds, without a daemon: sizes refused unread, error replies cut short,
the token's rules, and which ``inproc`` AIMs a daemon keeps in its own loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from aif.api import user as user_api
from aif.api import wire
from aif.daemon.daemon import DaemonConfig, check_auth, is_loopback, write_token
from aif.daemon.jobs import load_job
from aif.daemon.state import JobStore, NewJob
from aif.errors import ConfigError, MalformedMessage
from aif.inputs import safe_yaml


def test_error_replies_are_cut_to_a_bounded_size() -> None:
    reply = wire.error_reply(3, MalformedMessage("x" * 10_000_000))
    message = reply["error"]["message"]
    assert len(message) < wire.MAX_ERROR_MESSAGE + 100
    assert message.endswith("more characters not shown)")
    assert wire.bounded("short") == "short"


def test_a_request_with_a_million_wrong_values_names_a_few_of_them_cheaply() -> None:
    data = {"op": "submit", "rid": 9, "text": 1, "source": 2, "base_dir": 3, "work_dir": 4}
    data["overrides"] = [1] * 1_000_000
    with pytest.raises(MalformedMessage) as caught:
        user_api.parse_request(wire.pack_map(data))
    assert len(str(caught.value)) < 2000
    listing = wire.pack_map({"op": "list", "rid": 1, "states": [1] * 1_000_000})
    with pytest.raises(MalformedMessage, match="at most 32 items") as caught:
        user_api.parse_request(listing)
    assert len(str(caught.value)) < 1000


def test_an_oversized_request_is_refused_unread_but_its_rid_is_found() -> None:
    frame = wire.pack_map({"op": "submit", "rid": 77, "text": "a" * (user_api.MAX_REQUEST + 1)})
    with pytest.raises(MalformedMessage, match="exceeds"):
        user_api.unpack_request(frame)
    assert user_api.request_id(frame) == 77
    assert user_api.peek_rid(b"\xc1garbage") == 0
    assert user_api.peek_rid(wire.pack_map({"text": "x" * 5000, "rid": 3})) == 0
    assert user_api.rid_of({"rid": True}) == 0


def test_the_workflow_limit_is_the_yaml_loaders() -> None:
    assert user_api.MAX_WORKFLOW_CHARS == safe_yaml.MAX_TEXT_CHARS


def test_the_token_travels_beside_the_request_and_is_taken_off_it() -> None:
    data = {"op": "ping", "rid": 1, "token": "abc"}
    assert user_api.take_token(data) == "abc"
    assert isinstance(user_api.validate_request(data), user_api.Ping)
    assert user_api.take_token({"op": "ping"}) is None


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("tcp://127.0.0.1:7001", True),
        ("tcp://127.0.0.2:*", True),
        ("tcp://localhost:7001", True),
        ("tcp://[::1]:7001", True),
        ("tcp://0.0.0.0:7001", False),
        ("tcp://*:7001", False),
        ("tcp://10.1.2.3:7001", False),
        ("tcp://lab-server:7001", False),
        ("ipc:///tmp/x", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_no_auth_is_refused_off_loopback_and_in_the_secure_profile(tmp_path: Path) -> None:
    check_auth(DaemonConfig(tmp_path, api=["tcp://127.0.0.1:*"], no_auth=True))
    check_auth(DaemonConfig(tmp_path, api=["tcp://0.0.0.0:7001"]))  # a token then
    with pytest.raises(ConfigError, match="loopback"):
        check_auth(DaemonConfig(tmp_path, api=["tcp://0.0.0.0:7001"], no_auth=True))
    with pytest.raises(ConfigError, match="secure profile"):
        check_auth(DaemonConfig(tmp_path, profile="secure", no_auth=True))


def test_the_token_file_is_the_owners_alone(tmp_path: Path) -> None:
    token, path = write_token(tmp_path)
    assert path.read_text().strip() == token and len(token) >= 40
    assert path.stat().st_mode & 0o777 == 0o600
    assert write_token(tmp_path)[0] != token  # a fresh one at each start


WORKFLOW = """
name: places
aims:
  src: {type: source, params: {records: [1]}}
  tick: {type: 'tests.helpers.aims:Ticker', params: {limit: 1}}
  sink: {type: collect}
connections: [src.out -> sink.in]
"""


def test_the_daemon_keeps_only_light_builtin_aims_in_its_loop() -> None:
    def placements(policy: str) -> dict[str, str]:
        resolved = load_job(WORKFLOW, "p.yaml", (), None, policy)  # type: ignore[arg-type]
        return {n: d.placement for n, d in resolved.workflow.aims.items()}

    assert placements("light") == {"src": "inproc", "tick": "process", "sink": "inproc"}
    assert placements("allow") == {"src": "inproc", "tick": "inproc", "sink": "inproc"}
    assert placements("process") == {"src": "process", "tick": "process", "sink": "process"}


def _job(job_id: str) -> NewJob:
    return NewJob(
        id=job_id,
        workflow="w",
        source="w.yaml",
        text="name: w",
        overrides=(),
        base_dir="/",
        work_dir="/",
        queues=("cpu",),
    )


def test_a_job_live_at_each_of_three_daemon_deaths_is_quarantined(tmp_path: Path) -> None:
    with JobStore(tmp_path / "controller.db") as store:
        store.add(_job("poison"))
        store.add(_job("calm"))
        for death in (1, 2, 3):
            store.update("poison", state="starting")
            store.update("calm", state="running")
            # a clean exit in between settles the same jobs without counting
            store.recover(crashed=False)
            assert store.crashes("poison") == death - 1
            store.update("poison", state="running")
            [record] = [r for r in store.recover() if r.id == "poison"]
            assert store.crashes("poison") == death
            if death < 3:
                assert record.state == "queued"
                assert record.detail.startswith("re-queued")
        assert record.state == "failed" and record.final
        assert record.detail.startswith("quarantined: the controller died 3 times")
        assert "it was running" in record.detail
        assert store.get("calm").state == "queued"  # counted too, but below the limit
        assert store.recover() == []  # a quarantined job is never picked up again


def test_a_state_database_of_schema_1_gains_the_crash_count(tmp_path: Path) -> None:
    import sqlite3

    from aif.daemon import state as state_module

    path = tmp_path / "controller.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in state_module._MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.close()
    with JobStore(path) as store:
        store.add(_job("old"))
        assert store.crashes("old") == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == state_module.SCHEMA_VERSION
    db.close()
