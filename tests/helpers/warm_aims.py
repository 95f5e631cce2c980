"""AIMs that opt in to the daemon's warm workers, for ``test_warm_workers.py``.

Each reports what a job sees of the process that hosts it (its pid and its parent's,
whether torch was already imported, its random generators, its storage, what its
instance and module carry), and changes what a careless job could leave behind, so the
next job forked by the same worker shows whether any of it reached it.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

import pydantic

from aif import AIM

#: What a job leaves in a module global (a fresh fork must not see it).
_LEFT_BY_A_JOB: str | None = None


class WarmProbe(AIM):
    """Reports its pid, torch's and Python's first draws, its storage keys; then dirties
    the process (seeds torch, sets torch's threads, writes storage, keeps instance state)."""

    outputs = {"out": "int64"}
    warm_modules = ("torch",)

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        seed: int = 1234

    async def run(self) -> None:
        assert isinstance(self.params, WarmProbe.Params)
        preloaded = "torch" in sys.modules
        import torch

        global _LEFT_BY_A_JOB
        report = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "module_global": _LEFT_BY_A_JOB,
            "torch_seed": str(torch.initial_seed()),
            "torch_draw": float(torch.rand(1).item()),
            "python_draw": random.random(),
            "threads": torch.get_num_threads(),
            "keys": self.storage.keys(""),
            "leftover": getattr(self, "leftover", None),
            "torch_was_imported": preloaded,
        }
        _LEFT_BY_A_JOB = self.workflow
        self.storage.put(f"from-{self.workflow}", b"job state")
        self.leftover = self.workflow
        torch.manual_seed(self.params.seed)
        random.seed(self.params.seed)
        torch.set_num_threads(1)
        await self.result(**report)


class WarmHold(AIM):
    """Reports its pid, then holds until stopped (or ``seconds`` pass); imports nothing heavy."""

    outputs = {"out": "int64"}
    warm_modules: tuple[str, ...] = ()

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        seconds: float = 0.0

    async def run(self) -> None:
        assert isinstance(self.params, WarmHold.Params)
        await self.progress(pid=os.getpid(), ppid=os.getppid())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.params.seconds
        while loop.time() < deadline and await self.checkpoint():
            await asyncio.sleep(0.05)
        await self.result(pid=os.getpid(), ppid=os.getppid())


class ControllerWitness(AIM):
    """Runs in the controller (inproc, no warm modules): once every AIM feeding ``in``
    has ended, reports whether the controller's own process imported torch."""

    inputs = {"in": "any"}

    async def run(self) -> None:
        async for _ in self.events():
            pass
        await self.result(pid=os.getpid(), torch_in_controller="torch" in sys.modules)


#: Set by the warm-up, in the worker, before it forks (a fork sees it).
WARMED_IN: int | None = None


def warm_up() -> None:
    """A warm-up: note the process it ran in, and use torch (held to one thread there)."""
    import torch

    global WARMED_IN
    WARMED_IN = os.getpid()
    torch.ones(4, 4).sum()
    WARM_UP_THREADS.append(torch.get_num_threads())


#: torch's thread count each warm-up saw.
WARM_UP_THREADS: list[int] = []


def warm_up_leaving_a_thread() -> None:
    """A warm-up that must be refused: it leaves a thread running."""
    import threading
    import time

    threading.Thread(target=time.sleep, args=(30,), name="left-behind", daemon=True).start()


class WarmedProbe(AIM):
    """Reports what the warm-up left in its process: who ran it, with how many threads,
    and torch's thread count now (the fork's own, not the warm-up's one)."""

    outputs = {"out": "int64"}
    warm_modules = ("torch", "tests.helpers.warm_aims:warm_up")

    async def run(self) -> None:
        import torch

        await self.result(
            pid=os.getpid(),
            ppid=os.getppid(),
            warmed_in=WARMED_IN,
            warm_up_threads=list(WARM_UP_THREADS),
            threads=torch.get_num_threads(),
        )


class BrokenWarm(AIM):
    """Opts in with a module that does not exist: its worker cannot start."""

    outputs = {"out": "int64"}
    warm_modules = ("aif_tests_no_such_module",)

    async def run(self) -> None:
        await self.result(ran=True)
