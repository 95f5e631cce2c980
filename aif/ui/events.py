"""Live events for the browser: server-sent events, woken by the controller's own events.

A stream reads a job's events through the User API's ``logs`` (which writes the
daemon's buffered events first, so each comes with its sequence number), sends each as
``id: SEQ`` / ``event: TOPIC`` / ``data: JSON``, and ends with ``event: end`` once the
job has ended and every event is sent. Between reads it sleeps until the controller
publishes an event of that job (an epoch, a log line: sent at once) or, for the daemon's
own job-state changes, at most ``IDLE_WAKE`` seconds; a burst is read in one go, at
most every ``MIN_INTERVAL`` seconds. A progress event that reports a
finished epoch is followed by a ``metrics`` event with the metrics row (same id).

The same listener keeps each job's latest epoch (``progress``) for the job list, so
listing a thousand jobs reads no events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aif.api import user as user_api
from aif.daemon.records import EventRow
from aif.ui.views import dumps, metrics_row

if TYPE_CHECKING:
    from aif.communication.events import Event
    from aif.daemon.daemon import Daemon

#: Seconds a stream waits, without a controller event, before it reads again.
IDLE_WAKE = 0.25
#: Fewest seconds between two reads of one stream (each read writes the daemon's
#: buffered events first, which it otherwise batches every 0.2 s).
MIN_INTERVAL = 0.05
#: Seconds between comment lines that keep an idle stream's connection open.
KEEP_ALIVE = 15.0
#: Events read per ``logs`` call.
PAGE = 1000
#: Jobs whose latest epoch is kept (the oldest go first).
MAX_PROGRESS = 10_000


class LiveEvents:
    """The controller's events as wake-ups for streams, and each job's latest epoch."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        #: job id -> {"epoch", "epochs", "job"} of its latest finished epoch.
        self.progress: dict[str, dict[str, Any]] = {}
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._unsubscribe = None
        self.closing = False
        if daemon.controller is not None:
            self._unsubscribe = daemon.controller.subscribe(self._on_event)

    def close(self) -> None:
        """Stop listening; every open stream ends."""
        self.closing = True
        if self._unsubscribe is not None:
            with contextlib.suppress(ValueError):
                self._unsubscribe()
            self._unsubscribe = None
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    def _on_event(self, event: Event) -> None:
        job = event.workflow
        if job is None:
            return
        data = event.data
        if event.topic == "progress" and isinstance(data.get("step"), int):
            total = data.get("total")
            if job not in self.progress and len(self.progress) >= MAX_PROGRESS:
                del self.progress[next(iter(self.progress))]  # the longest-known job
            self.progress[job] = {
                "epoch": data["step"],
                "epochs": total if isinstance(total, int) else None,
                "job": str(data.get("job", "")),
            }
        for waiter in self._waiters.get(job, ()):
            waiter.set()

    async def _page(self, job: str, after: int) -> dict[str, Any]:
        page = await self.daemon.handle(user_api.Logs(job=job, after=after, limit=PAGE))
        assert isinstance(page, dict)
        return page

    async def stream(self, request: web.Request, job: str, after: int) -> web.StreamResponse:
        """Send ``job``'s events after ``after`` until it ends (the job id is resolved)."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        waiter = asyncio.Event()
        self._waiters[job].add(waiter)
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        try:
            last_read = -MIN_INTERVAL
            while not self.closing:
                wait = last_read + MIN_INTERVAL - loop.time()
                if wait > 0:  # a burst of events: read them together, not one by one
                    await asyncio.sleep(wait)
                waiter.clear()
                last_read = loop.time()
                page = await self._page(job, after)
                events = [EventRow.from_json({**e, "job": job}) for e in page["events"]]
                chunks = []
                for event in events:
                    chunks.append(_sse(event.seq, event.topic, event.to_json()))
                    row = metrics_row(event.data) if event.topic == "progress" else None
                    if row is not None:
                        chunks.append(_sse(event.seq, "metrics", row))
                if events:
                    after = events[-1].seq
                    quiet_since = loop.time()
                    await response.write("".join(chunks).encode())
                if page.get("final") and len(events) < PAGE:
                    end = {"job": job, "state": page.get("state")}
                    await response.write(_sse(after, "end", end).encode())
                    break
                if events:
                    continue
                if loop.time() - quiet_since > KEEP_ALIVE:
                    await response.write(b": keep-alive\n\n")
                    quiet_since = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), IDLE_WAKE)
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            self._waiters[job].discard(waiter)
            if not self._waiters[job]:
                del self._waiters[job]
        return response


def _sse(seq: int, event: str, data: Any) -> str:
    """One server-sent event (the JSON holds no newline, so it is one ``data:`` line)."""
    return f"id: {seq}\nevent: {event}\ndata: {dumps(data, separators=(',', ':'))}\n\n"
