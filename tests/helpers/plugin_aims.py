"""AIMs around the example plug-in in the plug-in tests (``tests.helpers.plugin_aims:Name``).

They feed the int8 accelerator and hold a run open on purpose, so that a test can
watch a remote host leave or die while the rest of the AIW is still running.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pydantic

from aif import AIM, Record


class TensorTicker(AIM):
    """Emits a seeded float32 tensor of ``shape`` every ``interval`` s until stopped."""

    outputs = {"out": "tensor<float32>"}

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        shape: list[int] = [4, 8]
        interval: float = 0.02
        seed: int = 0

    async def run(self) -> None:
        assert isinstance(self.params, TensorTicker.Params)
        rng = np.random.default_rng(self.params.seed)
        sent = 0
        while await self.checkpoint():
            await self.send("out", rng.standard_normal(self.params.shape, dtype=np.float32))
            sent += 1
            await asyncio.sleep(self.params.interval)
        await self.result(sent=sent)


class GatedSink(AIM):
    """Collects tensors; once its inputs close it waits for the ``gate`` file, then ends.

    Keeps its run going after its upstream finished, until the test opens the gate.
    """

    inputs = {"in": "tensor<float32>"}

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        gate: str

    async def run(self) -> None:
        assert isinstance(self.params, GatedSink.Params)
        shapes = [list(e.value.shape) async for e in self.events() if isinstance(e, Record)]
        await self.progress(received=len(shapes))
        gate = Path(self.params.gate)
        while not gate.exists() and await self.checkpoint():
            await asyncio.sleep(0.02)
        await self.result(shapes=shapes)
