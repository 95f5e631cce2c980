"""A real daemon fed a few hundred fuzzed User API frames over its ipc socket answers
every one (ok, or an error that names an ``aif.errors`` class, never an internal
traceback), still answers ``ping`` afterwards, and logs no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aif import errors
from aif.api.wire import pack_map
from aif.daemon.records import JobState
from tests.fuzz.test_user_api_properties import near_valid_requests, requests, values
from tests.helpers.daemon import DaemonProcess

pytestmark = pytest.mark.integration

#: Every op but ``shutdown``, which would end the daemon under test.
OPS = [
    *("ping", "submit", "list", "status", "logs", "suspend", "resume", "cancel", "aims"),
    *("attest", "peer.offer", "peer.host", "peer.release"),
]
ERROR_TYPES = {
    name
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, Exception)
}
WORKFLOW = (
    "name: w\naims:\n  src: {type: source, params: {records: [1]}}\n  sink: {type: collect}\n"
    "connections:\n  - src.out -> sink.in\n"
)
#: Seconds the daemon has to answer one frame.
ANSWER_TIMEOUT_MS = 10_000


frames = st.one_of(
    requests(OPS, junk_ops=False).map(pack_map),
    near_valid_requests().map(pack_map),
    near_valid_requests().map(pack_map),
    near_valid_requests().map(pack_map),
    st.binary(max_size=100),
    values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
)


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.daemon = DaemonProcess(tmp / "state", "--instances", "cpu=1").start()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, ANSWER_TIMEOUT_MS)
        ipc = [a for a in self.daemon.info()["api"] if a.startswith("ipc://")]
        self.sock.connect(ipc[0])
        # a held job, so that status, logs, suspend, resume and cancel of "w..." find one
        held = self.call(
            pack_map(
                {"op": "submit", "rid": 1, "text": WORKFLOW, "source": "w.yml", "hold": True}
                | {"overrides": [], "base_dir": str(tmp), "work_dir": str(tmp)}
            )
        )
        assert held["ok"], held
        assert held["result"]["state"] == JobState.HELD.value

    def call(self, frame: bytes) -> dict[str, Any]:
        self.sock.send(frame)
        reply = msgpack.unpackb(self.sock.recv(), raw=False)
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
        return reply

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
        self.daemon.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    made = Rig(tmp_path_factory.mktemp("fuzzed-daemon"))
    try:
        yield made
    finally:
        made.close()


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(frame=frames)
def test_the_daemon_answers_every_fuzzed_frame(rig: Rig, frame: bytes) -> None:
    reply = rig.call(frame)
    print(
        "REPLY",
        reply["ok"],
        reply.get("error", {}).get("type"),
        reply.get("error", {}).get("message", "")[:60],
    )
    if not reply["ok"]:
        error = reply["error"]
        assert error["type"] in ERROR_TYPES, error
        assert (
            "Traceback" not in error["message"] and "inside the controller" not in error["message"]
        ), error


def test_the_daemon_still_answers_and_logged_no_traceback(rig: Rig) -> None:
    reply = rig.call(pack_map({"op": "ping", "rid": 7}))
    assert reply["ok"] and reply["rid"] == 7
    log = rig.daemon.text()
    assert "Traceback" not in log, log[-4000:]
