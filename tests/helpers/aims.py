"""AIMs used by the tests. Importable by child processes as ``tests.helpers.aims:Name``
because the controller's children inherit the working directory (the repository root)."""

from __future__ import annotations

import asyncio
import os
import time

import pydantic

from aif import AIM, Record, Signal


class FrameSource(AIM):
    """Emits ``count`` typed frames: MPAI-AIF's struct example."""

    outputs = {"out": "{int32 frameNumber; int16 x; byte[] frame}"}

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        count: int = 3

    async def run(self) -> None:
        assert isinstance(self.params, FrameSource.Params)
        for i in range(self.params.count):
            await self.send("out", {"frameNumber": i, "x": -i, "frame": bytes([i]) * 16})


class FrameCheck(AIM):
    """Receives typed frames and reports what it saw."""

    inputs = {"in": "{int32 frameNumber; int16 x; byte[] frame}"}

    async def run(self) -> None:
        numbers = []
        async for event in self.events():
            if isinstance(event, Record):
                value = event.value
                assert value["frame"] == bytes([value["frameNumber"]]) * 16
                numbers.append(value["frameNumber"])
        await self.result(frames=numbers, pid=os.getpid())


class Ticker(AIM):
    """Emits an increasing counter every ``interval`` seconds until stopped; reports its pid."""

    outputs = {"out": "int64"}

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        interval: float = 0.02
        limit: int = 1_000_000

    def capabilities(self) -> dict[str, str]:
        return {"counts": "int64"}

    async def run(self) -> None:
        assert isinstance(self.params, Ticker.Params)
        await self.progress(pid=os.getpid())
        n = 0
        while n < self.params.limit and await self.checkpoint():
            await self.send("out", n)
            n += 1
            await asyncio.sleep(self.params.interval)
        await self.result(ticks=n)


class Crasher(AIM):
    """Raises after receiving ``after`` records."""

    inputs = {"in": "any"}

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        after: int = 1

    async def run(self) -> None:
        assert isinstance(self.params, Crasher.Params)
        seen = 0
        async for event in self.events():
            if isinstance(event, Record):
                seen += 1
                if seen >= self.params.after:
                    raise RuntimeError(f"sensor overheated after {seen} records")


class Hang(AIM):
    """Blocks its event loop (a hung native call): heartbeats stop."""

    async def run(self) -> None:
        await self.progress(pid=os.getpid())
        time.sleep(60)


class SignalEcho(AIM):
    """Reports every signal it receives, in order, with the records it saw before it."""

    inputs = {"in": "any"}

    async def run(self) -> None:
        seen: list[str] = []
        async for event in self.events():
            if isinstance(event, Signal):
                seen.append(f"signal:{event.code}")
            elif isinstance(event, Record):
                seen.append("record")
        await self.result(seen=seen)


class StorageUser(AIM):
    """Writes to its AIM Storage and to Global Storage, reads both back, reports keys
    (and whether it ran in a secure run)."""

    inputs = {"in": "string"}

    async def run(self) -> None:
        async for event in self.events():
            if isinstance(event, Record):
                self.storage.put(f"notes/{event.value}", event.value.encode())
                self.global_storage.put(f"shared/{self.name}-{event.value}", b"x")
        await self.result(
            own=self.storage.keys("notes/"),
            shared=self.global_storage.keys("shared/"),
            secure=self.secure,
        )


class CapableSink(AIM):
    """Declares the capabilities its params give, collects integers, reports what it got."""

    inputs = {"in": "int64"}

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        colour: str = "red"
        pid_in_capabilities: bool = False

    def capabilities(self) -> dict[str, object]:
        assert isinstance(self.params, CapableSink.Params)
        caps: dict[str, object] = {"colour": self.params.colour}
        if self.params.pid_in_capabilities:
            caps["pid"] = os.getpid()
        return caps

    async def run(self) -> None:
        got = [e.value async for e in self.events() if isinstance(e, Record)]
        await self.result(got=got)


class ColourRouter(AIM):
    """Sends each number to the peer whose declared colour matches: even red, odd blue."""

    outputs = {"out": "int64"}

    async def run(self) -> None:
        peers = {p.capabilities.get("colour"): p.aim for p in self.peers("out")}
        pids = {p.aim: p.capabilities.get("pid", 0) for p in self.peers("out")}
        await self.result(peers=sorted(p.aim for p in self.peers("out")), pids=pids)
        for n in range(6):
            await self.send("out", n, to=peers["red" if n % 2 == 0 else "blue"])


class Misrouter(AIM):
    """Sends to an AIM its port does not reach."""

    outputs = {"out": "int64"}

    async def run(self) -> None:
        await self.send("out", 1, to="nowhere")


class ModuleCensus(AIM):
    """Reports which ``aif`` modules its process has loaded by the time it runs."""

    async def run(self) -> None:
        import sys

        loaded = sorted(name for name in sys.modules if name == "aif" or name.startswith("aif."))
        await self.result(modules=loaded, pid=os.getpid())
