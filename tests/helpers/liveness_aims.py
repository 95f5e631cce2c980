"""AIMs for the liveness tests: one that computes in a C call holding the GIL, one that
waits to be stopped. Importable by child processes as ``tests.helpers.liveness_aims:Name``."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pydantic

from aif import AIM


def _gil_held_for(cpu_seconds: float) -> int:
    """How many items ``sum(range(n))`` needs to compute for about ``cpu_seconds``.

    ``sum`` over a ``range`` runs entirely in C and never lets the GIL go (no bytecode
    runs, so the interpreter never offers it to another thread), like a long native
    aihwkit call that holds it.
    """
    n = 10_000_000
    start = time.process_time()
    sum(range(n))
    per_item = max(time.process_time() - start, 1e-3) / n
    return int(cpu_seconds / per_item)


class GilHog(AIM):
    """Computes for ``cpu_seconds`` of CPU in one call that holds the GIL, then reports
    how long it took and the longest pause a Python thread saw meanwhile."""

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        cpu_seconds: float = 3.0

    async def run(self) -> None:
        assert isinstance(self.params, GilHog.Params)
        n = _gil_held_for(self.params.cpu_seconds)
        gaps: list[float] = []
        done = threading.Event()

        def tick() -> None:
            last = time.monotonic()
            while not done.wait(0.02):
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = threading.Thread(target=tick, name="gil-probe")
        ticker.start()
        await asyncio.sleep(0.1)
        cpu, wall = time.process_time(), time.monotonic()
        sum(range(n))  # holds the GIL throughout: no heartbeat can be sent
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        done.set()
        ticker.join()
        await self.result(wall=wall, cpu=cpu, longest_gil_pause=max(gaps, default=0.0))


class Idle(AIM):
    """Reports its pid, then waits (its event loop free) until the run ends."""

    async def run(self) -> None:
        await self.progress(pid=os.getpid())
        await asyncio.sleep(3600)


class LoopHog(AIM):
    """Computes in its event loop (Python code that never awaits) for ``seconds``."""

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        seconds: float = 3.0

    async def run(self) -> None:
        assert isinstance(self.params, LoopHog.Params)
        end = time.monotonic() + self.params.seconds
        turns = 0
        while time.monotonic() < end:  # the event loop never runs meanwhile
            turns += 1
        await self.result(turns=turns)
