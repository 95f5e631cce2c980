"""The User API client refuses what cannot be an address, says when no daemon is there or
when it was closed, and turns replies into the daemon's records (and back, for --json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aif import Client, DaemonError
from aif.api import user as user_api
from aif.daemon.records import (
    AIMListing,
    DaemonInfo,
    EventRow,
    JobRecord,
    JobState,
    JobStatus,
    PeerHostedAIM,
)
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


def test_a_closed_client_says_so_and_closing_twice_is_fine(tmp_path: Path) -> None:
    client = Client(f"ipc://{tmp_path}/nobody", timeout=0.1)
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(DaemonError, match=r"is closed; make a new aif\.Client to call 'ping'"):
        client.ping()
    with pytest.raises(DaemonError, match="is closed"), Client(f"ipc://{tmp_path}/x") as other:
        other.close()
        list(other.logs("job"))


def job_json(**changes: Any) -> dict[str, Any]:
    """A job as the daemon sends it (``JobManager._json``)."""
    job: dict[str, Any] = {
        "seq": 4,
        "id": "wf-0a1b2c3d",
        "workflow": "wf",
        "source": "wf.yml",
        "overrides": ["aims.a.params.x=1"],
        "base_dir": "/b",
        "work_dir": "/w",
        "queues": ["cuda", "cpu"],
        "priority": 2,
        "on_restart": "requeue",
        "state": "succeeded",
        "detail": "",
        "attempts": 1,
        "instance": "cpu-0",
        "submitted": 100.0,
        "started": 101.5,
        "ended": 103.25,
        "not_before": 0.0,
        "result": {"state": "succeeded", "error": None, "outputs": {"a.out": 3}},
        "final": True,
        "queue": "cpu",
    }
    return {**job, **changes}


def test_a_job_reply_becomes_a_job_record_and_back_to_the_same_json() -> None:
    data = job_json()
    job = JobRecord.from_json(data)
    assert job.state is JobState.SUCCEEDED and job.final
    assert job.queues == ("cuda", "cpu") and job.overrides == ("aims.a.params.x=1",)
    assert (job.queue, job.instance, job.attempts) == ("cpu", "cpu-0", 1)
    assert job.result is not None and job.result["outputs"] == {"a.out": 3}
    # what the CLI prints with --json: the same keys, in the same order, the same values
    assert json.dumps(job.to_json()) == json.dumps(data)


def test_a_malformed_job_reply_is_refused_naming_the_field() -> None:
    with pytest.raises(MalformedMessage, match=r"at ipc://x sent a job that is not one.*state"):
        JobRecord.from_json(job_json(state="exploded"), "the controller at ipc://x")
    with pytest.raises(MalformedMessage, match="attempts"):
        JobRecord.from_json(job_json(attempts="many"))
    missing = job_json()
    del missing["workflow"]
    with pytest.raises(MalformedMessage, match="workflow: Field required"):
        JobRecord.from_json(missing)
    with pytest.raises(MalformedMessage, match="not one"):
        JobRecord.from_json(["not", "a", "map"])


def test_status_aims_ping_and_events_round_trip_as_the_daemon_sends_them() -> None:
    aim = {
        "name": "sim",
        "type": "analog-simulator",
        "placement": "process",
        "state": "running",
        "pid": 4242,
        "host": "process 4242",
        "error": None,
        "capabilities": {"device": "cpu"},
    }
    waiting = {"job": job_json(state="queued", final=False), "aims": [], "waiting": "a reason"}
    running = {"job": job_json(state="running", final=False), "aims": [aim]}
    for data in (waiting, running):
        status = JobStatus.from_json(data)
        assert json.dumps(status.to_json()) == json.dumps(data)
    assert JobStatus.from_json(waiting).waiting == "a reason"
    assert JobStatus.from_json(running).aims[0].pid == 4242
    assert JobStatus.from_json(running).aims[0].capabilities == {"device": "cpu"}
    older = {k: v for k, v in aim.items() if k != "capabilities"}  # a daemon before them
    assert JobStatus.from_json({**running, "aims": [older]}).aims[0].capabilities == {}
    with pytest.raises(MalformedMessage, match=r"aims\.0\.pid"):
        JobStatus.from_json({**running, "aims": [{**aim, "pid": "x"}]})

    instance = {
        "name": "cpu-0",
        "queue": "cpu",
        "state": "busy",
        "load": "1/2",
        "running": ["wf-0a1b2c3d"],
        "capabilities": {"device": "cpu", "cores": 8},
    }
    peer = {
        "workflow": "other-run",
        "aim": "relay",
        "type": "relay",
        "pid": 77,
        "controller": "tcp://10.0.0.2:7002",
        "origin": "",
        "state": "exited 0",
        "since": 12.5,
    }
    listing = {
        "instances": [instance],
        "hosts": [{"job": "wf-0a1b2c3d", "instance": "cpu-0", **aim}],
        "peer_hosts": [peer],
    }
    aims = AIMListing.from_json(listing)
    assert aims.instances[0].running == ("wf-0a1b2c3d",) and aims.hosts[0].job == "wf-0a1b2c3d"
    assert aims.peer_hosts[0] == PeerHostedAIM.from_json(peer)
    assert json.dumps(aims.to_json()) == json.dumps(listing)

    ping = {
        "pid": 1234,
        "version": "0.1.0",
        "machine": "lab-3",
        "state_dir": "/s",
        "api": ["ipc:///s/api.sock", "tcp://127.0.0.1:7001"],
        "aim_api": "tcp://127.0.0.1:40001",
        "started": 50.0,
        "uptime": 3.5,
        "draining": False,
        "jobs": {"queued": 1, "succeeded": 2},
        "instances": 3,
        "profile": "secure",
        "curve": "curve:" + "x" * 40,
        "ray": None,
    }
    info = DaemonInfo.from_json(ping)
    assert info.api[1] == "tcp://127.0.0.1:7001" and info.jobs["succeeded"] == 2
    assert json.dumps(info.to_json()) == json.dumps(ping)
    with pytest.raises(MalformedMessage, match=r"sent a ping answer that is not one.*pid"):
        DaemonInfo.from_json({**ping, "pid": None})

    event = {"seq": 9, "time": 1.5, "topic": "log", "source": "sim", "data": {"message": "hi"}}
    row = EventRow.from_json({**event, "job": "wf-0a1b2c3d"})
    assert row.job == "wf-0a1b2c3d" and row.data["message"] == "hi"
    assert json.dumps(row.to_json()) == json.dumps(event)
