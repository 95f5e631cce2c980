"""Events: what the controller and the AIMs tell whoever listens (state, progress, logs).

Events are fire-and-forget broadcasts over a ZeroMQ PUB/SUB pair, not data: a slow
subscriber loses events beyond its queue instead of slowing the publisher down (that
is PUB's contract). On the wire an event is two frames::

    frame 0   topic   b"state" | b"progress" | b"log" | b"result"   (SUB filters on it)
    frame 1   body    msgpack map {"source": str, "workflow": str | None,
                                   "data": {str: plain value}, "time": float}

``data`` holds plain values only (no arrays); results that carry arrays travel on
channels. A subscriber drops frames that do not decode, counting them in ``dropped``.

Readers take ``Event.payload``: ``data`` read once as a typed payload (``RunStateChanged``,
``ProgressUpdate``, ... in ``aif.communication.event_payloads``), never a raise, whatever
an AIM sent. Writers build events from payloads (``Event.of``, ``Event.run_state``,
``Event.aim_state``), so nobody hand-writes the maps.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from aif.communication import codec
from aif.communication.channel import Transport, bind, new_address
from aif.communication.event_payloads import (
    TOPICS,
    AIMStateChanged,
    Payload,
    RunStateChanged,
    Topic,
    parse_payload,
)
from aif.errors import ChannelClosed, ChannelError, MalformedMessage

__all__ = ["CONTROLLER", "TOPICS", "Event", "EventPublisher", "EventSubscriber", "Topic"]

#: The ``source`` of the controller's own events (an AIM's is its name).
CONTROLLER = "controller"

_TOPIC_BYTES = {topic.encode(): topic for topic in TOPICS}
_FIELDS = frozenset({"source", "workflow", "data", "time"})

log = logging.getLogger("aif.events")


@dataclass(frozen=True, slots=True)
class Event:
    """One event: what happened (``topic``, ``data``), where (``source``, ``workflow``), when."""

    topic: Topic
    source: str
    workflow: str | None
    data: dict[str, Any]
    time: float = field(default_factory=time.time)
    _payload: Payload | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def payload(self) -> Payload:
        """``data`` as a typed payload, read on first use (``Unrecognized`` if it fits none).

        ``data`` is read once: treat it as read-only after the payload has been taken.
        """
        payload = self._payload
        if payload is None:
            payload = parse_payload(self.topic, self.data)
            object.__setattr__(self, "_payload", payload)
        return payload

    @classmethod
    def of(cls, payload: Payload, source: str, workflow: str | None) -> Event:
        """An event carrying ``payload``, now (its topic and ``data`` are the payload's)."""
        event = cls(payload.topic, source, workflow, payload.to_data())
        object.__setattr__(event, "_payload", payload)
        return event

    @classmethod
    def run_state(cls, workflow: str, state: str, error: str | None = None) -> Event:
        """The controller's word that run ``workflow`` entered ``state`` (a ``RunState`` value)."""
        return cls.of(RunStateChanged.named(state, error), CONTROLLER, workflow)

    @classmethod
    def aim_state(
        cls,
        aim: str,
        workflow: str | None,
        state: str,
        *,
        pid: int | None = None,
        host: str | None = None,
    ) -> Event:
        """AIM ``aim`` of run ``workflow`` entered ``state`` (an ``AIMState`` value)."""
        return cls.of(AIMStateChanged.named(state, pid, host), aim, workflow)

    def to_frames(self) -> list[bytes]:
        """``[topic, body]``; raises ``WireError`` naming a part of ``data`` that can't cross."""
        if self.topic not in TOPICS:
            raise ChannelError(f"event topic must be one of {list(TOPICS)}, got {self.topic!r}")
        body = {
            "source": self.source,
            "workflow": self.workflow,
            "data": self.data,
            "time": float(self.time),
        }
        return [self.topic.encode(), codec.pack(body, "event")]

    @classmethod
    def from_frames(cls, frames: Sequence[Any]) -> Event:
        """The inverse of ``to_frames``; raises ``MalformedMessage`` on any fault."""
        if len(frames) != 2:
            raise MalformedMessage(f"an event has 2 frames (topic, body), got {len(frames)}")
        topic = _TOPIC_BYTES.get(bytes(frames[0]))
        if topic is None:
            raise MalformedMessage(f"unknown event topic {bytes(frames[0])[:32]!r}")
        body = codec.unpack(frames[1], "event body")
        if type(body) is not dict or body.keys() != _FIELDS:
            shape = sorted(body) if type(body) is dict else type(body).__name__
            raise MalformedMessage(f"event body must be a map of {sorted(_FIELDS)}, got {shape}")
        source, workflow, data, when = (body[k] for k in ("source", "workflow", "data", "time"))
        if type(source) is not str:
            raise MalformedMessage(f"event field 'source' must be a str, got {source!r}")
        if workflow is not None and type(workflow) is not str:
            raise MalformedMessage(f"event field 'workflow' must be a str or nil: {workflow!r}")
        if type(data) is not dict:
            raise MalformedMessage(f"event field 'data' must be a map, got {type(data).__name__}")
        if type(when) is not float:
            raise MalformedMessage(f"event field 'time' must be a float, got {when!r}")
        return cls(topic=topic, source=source, workflow=workflow, data=data, time=when)


class EventPublisher:
    """Binds a PUB socket and broadcasts events; never waits on subscribers."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str | None = None,
        transport: Transport = "inproc",
        *,
        ipc_dir: Path | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self._own_dir: Path | None = None
        self._sock = ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, queue_size)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            if endpoint is None:
                if transport == "ipc" and ipc_dir is None:
                    self._own_dir = ipc_dir = Path(tempfile.mkdtemp(prefix="aif-"))
                endpoint = new_address(transport, f"{uuid.uuid4().hex[:12]}-events", ipc_dir)
            endpoint = bind(self._sock, endpoint)
        except BaseException:
            self.close()
            raise
        #: The address subscribers connect to.
        self.endpoint: str = endpoint

    async def publish(self, event: Event) -> None:
        """Broadcast ``event``; it is lost for subscribers whose queue is full."""
        try:
            await self._sock.send_multipart(event.to_frames())
        except zmq.ZMQError as exc:
            raise ChannelClosed(f"event publisher on {self.endpoint}: {exc}") from exc

    def publish_nowait(self, event: Event) -> bool:
        """Broadcast ``event`` from synchronous code; False when it was dropped (queue full).

        PUB never waits for subscribers, so this needs no event-loop round trip.
        """
        try:
            self._sock.send_multipart(event.to_frames(), flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            raise ChannelClosed(f"event publisher on {self.endpoint}: {exc}") from exc
        return True

    def close(self) -> None:
        """Close the socket (unsent events are discarded) and remove an own ipc dir."""
        self._sock.close(linger=0)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None


class EventSubscriber:
    """Connects a SUB socket to a publisher and yields the events of chosen topics."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        topics: Iterable[Topic] = TOPICS,
        *,
        queue_size: int = 10_000,
    ) -> None:
        wanted = list(topics)
        unknown = [t for t in wanted if t not in TOPICS]
        if unknown:
            raise ChannelError(f"unknown event topics {unknown}; choose from {list(TOPICS)}")
        self.endpoint = endpoint
        #: Frames received that were not events.
        self.dropped = 0
        self._sock = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, queue_size)
        self._sock.setsockopt(zmq.LINGER, 0)
        for topic in wanted:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(linger=0)
            raise ChannelError(f"cannot connect an event subscriber to {endpoint}: {exc}") from exc

    async def recv(self) -> Event:
        """The next well-formed event of a subscribed topic."""
        while True:
            try:
                frames = await self._sock.recv_multipart()
            except zmq.ZMQError as exc:
                raise ChannelClosed(f"event subscriber on {self.endpoint}: {exc}") from exc
            try:
                return Event.from_frames(frames)
            except MalformedMessage as exc:
                self.dropped += 1
                log.warning("events from %s: dropped a malformed event: %s", self.endpoint, exc)

    def close(self) -> None:
        """Close the socket; a pending ``recv`` is cancelled."""
        self._sock.close(linger=0)
