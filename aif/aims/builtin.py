"""Small general-purpose AIMs that ship with aif.

They are the plumbing of workflows and tests: emit given records, emit tensors,
pass records on, digest them, collect them. Each is written against the public AIM
API only, as a third party would write one.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pydantic

from aif.aims.base import AIM
from aif.communication.ports import Record, Signal


class _Params(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class SourceParams(_Params):
    """Parameters of ``source``."""

    records: list[Any] = pydantic.Field(
        default_factory=list, description="Records to emit on 'out', in order."
    )


class Source(AIM):
    """Emits the records given in its parameters on ``out``, then ends."""

    outputs = {"out": "any"}
    Params = SourceParams

    async def run(self) -> None:
        assert isinstance(self.params, SourceParams)
        for record in self.params.records:
            if not await self.checkpoint():
                return
            await self.send("out", record)


class Relay(AIM):
    """Passes every record and signal from ``in`` to ``out`` unchanged."""

    inputs = {"in": "any"}
    outputs = {"out": "any"}

    async def run(self) -> None:
        async for event in self.events():
            if isinstance(event, Record):
                await self.send("out", event.value)
            elif isinstance(event, Signal) and event.port is not None:
                await self.send_signal("out", event.code)


#: The largest tensor ``tensor-source`` makes: 1 GiB of float32 (a channel carries
#: 256 MiB unless its connection raises ``max_message_size``).
MAX_TENSOR_BYTES = 1 << 30
#: The most tensors one ``tensor-source`` emits (its result lists a digest of each).
MAX_TENSOR_COUNT = 100_000
#: The most dimensions a tensor may have (numpy's own limit is 64).
MAX_TENSOR_DIMS = 32


class TensorSourceParams(_Params):
    """Parameters of ``tensor-source``."""

    shape: list[pydantic.PositiveInt] = pydantic.Field(
        default=[4, 4],
        max_length=MAX_TENSOR_DIMS,
        description="Shape of each tensor.",
    )
    count: int = pydantic.Field(
        default=1, ge=0, le=MAX_TENSOR_COUNT, description="Tensors to emit."
    )
    seed: int = pydantic.Field(default=0, description="Seed of the random generator.")

    @pydantic.field_validator("shape")
    @classmethod
    def _fits_in_memory(cls, shape: list[int]) -> list[int]:
        """Refuse a shape too big to allocate, before anything is allocated."""
        size = math.prod(shape) * np.dtype(np.float32).itemsize
        if size > MAX_TENSOR_BYTES:
            raise ValueError(
                f"a float32 tensor of shape {shape} takes {size:,} bytes, over the limit of "
                f"{MAX_TENSOR_BYTES:,} bytes (1 GiB) per record; use a smaller shape, and "
                "more records (count) for more data"
            )
        return shape


def digest(value: Any) -> str:
    """SHA-256 of a record: the raw bytes, dtype and shape of arrays and tensors.

    Used to prove that bytes arrive identical after crossing channels.
    """
    h = hashlib.sha256()
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        h.update(f"{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).data)
    elif isinstance(value, bytes | bytearray | memoryview):
        h.update(bytes(value))
    else:
        h.update(repr(value).encode())
    return h.hexdigest()


class TensorSource(AIM):
    """Emits ``count`` seeded random float32 tensors of ``shape`` on ``out``.

    Reports the SHA-256 of each tensor it sent as a result, so a workflow can check
    that what arrives downstream is byte-identical.
    """

    outputs = {"out": "tensor<float32>"}
    Params = TensorSourceParams

    async def run(self) -> None:
        assert isinstance(self.params, TensorSourceParams)
        rng = np.random.default_rng(self.params.seed)
        digests = []
        for _ in range(self.params.count):
            if not await self.checkpoint():
                break
            tensor = rng.standard_normal(self.params.shape, dtype=np.float32)
            digests.append(digest(tensor))
            await self.send("out", tensor)
        await self.result(sent=len(digests), digests=digests)


class Checksum(AIM):
    """Emits the SHA-256 (hex) of every record it receives on ``in``."""

    inputs = {"in": "any"}
    outputs = {"out": "string"}

    async def run(self) -> None:
        async for event in self.events():
            if isinstance(event, Record):
                await self.send("out", digest(event.value))


class Collect(AIM):
    """Receives every record on ``in``; reports how many and their digests at the end."""

    inputs = {"in": "any"}

    async def run(self) -> None:
        digests: list[str] = []
        async for event in self.events():
            if isinstance(event, Record):
                digests.append(digest(event.value))
        await self.result(received=len(digests), digests=digests)
