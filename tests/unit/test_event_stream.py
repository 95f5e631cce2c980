"""The event stream's stop rules: an ordinary AIM ends at once, a draining sink reads on."""

from __future__ import annotations

from aif.communication.ports import EndOfStream, Record, Stop
from aif.host.event_stream import EventStream


async def collect(stream: EventStream) -> list[object]:
    return [event async for event in stream.events()]


async def test_a_stop_ends_the_stream_before_queued_records() -> None:
    stream = EventStream()
    stream.open_writers = {"in": 1}
    stream._held.append(Record(port="in", value=1))
    stream.stopping = True
    events = await collect(stream)
    assert events == [Stop("stopped by the controller")]


async def test_a_draining_sink_keeps_what_arrives_until_its_writers_close() -> None:
    stream = EventStream()
    stream.drain_on_stop = True
    stream.open_writers = {"in": 1}
    stream._held.extend([Record(port="in", value=1), EndOfStream(port="in")])
    stream.stopping = True
    events = await collect(stream)
    assert events == [Record(port="in", value=1), Stop("stopped by the controller")]
