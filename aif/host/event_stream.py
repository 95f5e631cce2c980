"""The single ordered event stream an AIM reads: its inputs and signals, merged.

An AIM host owns one ``EventStream``. Each input reader is pumped into it; signals
(from the inputs' high lanes and from the controller's control channel) go on their
own queue and overtake any record that waits. ``events()`` yields what ``AIM.events()``
promises: signals first, then records, then one ``Stop`` once the controller asked
to stop or every writer of every input sent its end-of-stream; nothing while the
AIM is suspended. A draining sink (a reporter) reads on after a stop until its
writers close, so the last results its upstream sends on the way out are kept.
Kept apart from the host, which only registers, wires and supervises, because this
merging is where the ordering rules live.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aif.communication.channel import ChannelReader
from aif.communication.ports import AIMEvent, EndOfStream, Record, Signal, Stop


class EventStream:
    """Inputs and signals of one AIM, merged into one ordered stream of events."""

    def __init__(self) -> None:
        #: Writers still open per input port; the stream ends when none is left.
        self.open_writers: dict[str, int] = {}
        #: Cleared while the AIM is suspended: no event is yielded until it is set.
        self.resumed = asyncio.Event()
        self.resumed.set()
        #: Set when the controller asked the AIM to stop: the stream ends with ``Stop``.
        self.stopping = False
        #: A sink that keeps what its upstream sends after a stop (``AIM.drain_on_stop``)
        #: reads on until every writer has closed, instead of ending at once.
        self.drain_on_stop = False
        self._signals: asyncio.Queue[Signal] = asyncio.Queue()
        self._records: asyncio.Queue[Record | EndOfStream] = asyncio.Queue(maxsize=1)
        self._held: list[Record | EndOfStream] = []

    def signal(self, signal: Signal) -> None:
        """Queue a signal; it is yielded before any record that waits."""
        self._signals.put_nowait(signal)

    async def events(self) -> AsyncIterator[AIMEvent]:
        """The AIM's events: signals first, then records, then one ``Stop``."""
        while True:
            await self.resumed.wait()
            if not self._signals.empty():
                yield self._signals.get_nowait()
                continue
            if self.stopping and not self.drain_on_stop:
                yield Stop("stopped by the controller")
                return
            if self._held:
                held = self._held.pop(0)
                if isinstance(held, EndOfStream):
                    self._close_input(held.port)
                    continue
                yield held
                continue
            if not self.open_writers:
                yield Stop("stopped by the controller" if self.stopping else "all inputs closed")
                return
            if not self._records.empty():
                # A record already waits (the usual case in a stream): take it without
                # the two futures that waiting on both queues costs.
                self._held.append(self._records.get_nowait())
                continue
            sig_wait = asyncio.ensure_future(self._signals.get())
            rec_wait = asyncio.ensure_future(self._records.get())
            done, _ = await asyncio.wait({sig_wait, rec_wait}, return_when=asyncio.FIRST_COMPLETED)
            if sig_wait in done:
                if rec_wait.done():
                    # Both arrived: keep the record for the next turn, signal first.
                    self._held.append(rec_wait.result())
                else:
                    rec_wait.cancel()
                yield sig_wait.result()
                continue
            sig_wait.cancel()
            event = rec_wait.result()
            if isinstance(event, EndOfStream):
                self._close_input(event.port)
                continue
            yield event

    async def pump(self, reader: ChannelReader) -> None:
        """Move one input's events into the AIM's stream; signals jump the queue."""
        while True:
            event = await reader.recv()
            if isinstance(event, Signal):
                self._signals.put_nowait(event)
            else:
                await self._records.put(event)

    def _close_input(self, port: str) -> None:
        left = self.open_writers.get(port, 0) - 1
        if left <= 0:
            self.open_writers.pop(port, None)
        else:
            self.open_writers[port] = left
