"""The frames a warm worker and its pool exchange (``aif.host.warm``): round trips, and
a clear ``MalformedMessage`` for what is not one of them."""

from __future__ import annotations

import msgpack
import pytest

from aif.errors import MalformedMessage
from aif.host.warm import (
    MAX_FRAME,
    AIMForked,
    AIMServed,
    ServeAIM,
    WorkerReady,
    frame_length,
    pack,
    unpack,
)


@pytest.mark.parametrize(
    "message",
    [
        WorkerReady(pid=12, modules=["torch"], seconds=1.5),
        ServeAIM(job=3, controller="ipc:///tmp/x", aim="simulator", workflow="j", modules=[]),
        AIMForked(job=3, pid=4321),
        AIMServed(job=3, status=0, rss_mib=402.5, worker_rss_mib=380.0),
        AIMServed(job=4, status=-9, rss_mib=0.0),
    ],
)
def test_each_message_round_trips(message: WorkerReady | ServeAIM | AIMForked | AIMServed) -> None:
    frame = pack(message)
    assert frame_length(frame[:4]) == len(frame) - 4
    assert unpack(frame[4:]) == message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"op": "pickle"}), "unknown op"),
        (msgpack.packb({"op": "served", "job": 1, "status": "0", "rss_mib": 1}), "'status'"),
        (msgpack.packb({"op": "served", "job": 1, "status": True, "rss_mib": 1}), "'status'"),
        (msgpack.packb({"op": "served", "job": 1, "rss_mib": 1.0}), "status"),
        (msgpack.packb({"op": "forked", "job": 1, "pid": 2.5}), "bad field 'pid'"),
        (msgpack.packb({"op": "ready", "pid": 1, "modules": [1], "seconds": 0}), "strings"),
        (msgpack.packb({"op": "serve", "controller": "x", "aim": "a", "extra": 1}), "'extra'"),
    ],
)
def test_what_is_not_a_frame_is_refused_by_name(body: bytes, says: str) -> None:
    with pytest.raises(MalformedMessage, match=says):
        unpack(body)


def test_an_oversized_frame_is_refused_before_it_is_read() -> None:
    with pytest.raises(MalformedMessage, match="limit"):
        frame_length((MAX_FRAME + 1).to_bytes(4, "big"))


def test_forking_is_supported_here_and_not_without_pidfds(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from aif.controller.launchers.warm import forking_supported

    assert forking_supported()  # Linux 5.3+: the warm workers' forks can be watched

    def no_pidfds(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfds)
    assert not forking_supported()  # then every process AIM gets a fresh python
