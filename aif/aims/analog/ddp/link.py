"""What a data-parallel rank and the simulator that started it say to each other.

The simulator (:mod:`aif.aims.analog.ddp.supervisor`) binds a ZeroMQ ROUTER; each rank
(:mod:`aif.aims.analog.ddp.rank`) connects a DEALER whose identity is ``rank-N``. Every
message is one frame holding a msgpack map with a ``kind`` (no pickle on either side):

* rank → simulator: ``hello`` (rank, pid, host), ``epoch`` (rank 0: the epoch's metrics,
  already reduced over the ranks), ``done`` (rank 0: how training ended, and the
  trained weights as a tensors-only checkpoint), ``error`` (any rank: why it stops);
* simulator → rank: ``job`` (the experiment and where to run it), then ``control``
  words, each with a rising ``gen``: ``pause``, ``resume``, ``stop``.

Where the ranks find each other is torch's business: ``MASTER_ADDR``/``MASTER_PORT``
and ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, read here into a :class:`RankPlace`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from aif.communication.frames import decode
from aif.errors import ConfigError, MalformedMessage

#: Environment variable holding the simulator's ROUTER endpoint, for supervised ranks.
CONTROL_ENV = "AIF_DDP_CONTROL"
#: Largest message a side accepts: the trained weights of a large model fit.
MAX_MESSAGE = 2**31 - 1
ControlWord = Literal["pause", "resume", "stop"]
CONTROL_WORDS: tuple[ControlWord, ...] = ("pause", "resume", "stop")


def encode(kind: str, **fields: Any) -> bytes:
    """One message: ``{"kind": kind, **fields}`` as msgpack."""
    body: bytes = msgpack.packb({"kind": kind, **fields}, use_bin_type=True)
    return body


def read(frame: bytes, what: str) -> dict[str, Any]:
    """A message's map; ``MalformedMessage`` when it is not one or has no text ``kind``."""
    if len(frame) > MAX_MESSAGE:
        raise MalformedMessage(f"{what}: message of {len(frame)} bytes")
    message = decode(frame, what)
    if not isinstance(message.get("kind"), str):
        raise MalformedMessage(f"{what}: message without a 'kind'")
    return message


def field(message: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``message[name]``, checked to be of ``kind`` (``MalformedMessage`` otherwise)."""
    value = message.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MalformedMessage(
            f"{message.get('kind')} message: {name!r} is {type(value).__name__}, "
            f"expected {getattr(kind, '__name__', kind)}"
        )
    return value


@dataclass(frozen=True)
class RankPlace:
    """Which rank this process is, of how many, and its place on its own machine."""

    rank: int
    world: int
    local_rank: int
    local_world: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RankPlace:
        """torch's own variables (set by the simulator, ``torchrun`` or by hand), else
        Slurm's (``srun`` sets ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``)."""
        env = os.environ if environ is None else environ

        def number(names: tuple[str, ...], default: int | None) -> int:
            for name in names:
                text = env.get(name)
                if text is None or text == "":
                    continue
                try:
                    return int(text)
                except ValueError:
                    raise ConfigError(f"{name}={text!r} is not a whole number") from None
            if default is None:
                raise ConfigError(
                    f"{names[0]} is not set: start the ranks with torchrun, srun, or set "
                    "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (docs/multi-machine.md)"
                )
            return default

        world = number(("WORLD_SIZE", "SLURM_NTASKS"), None)
        rank = number(("RANK", "SLURM_PROCID"), None)
        local_rank = number(("LOCAL_RANK", "SLURM_LOCALID"), 0)
        local_world = number(("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"), 1)
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"rank {rank} of {world}: a rank is 0 .. WORLD_SIZE - 1")
        if not 0 <= local_rank < max(local_world, 1):
            local_world = local_rank + 1  # srun may not say how many tasks share a node
        return cls(rank, world, local_rank, local_world)


def torch_environment(place: RankPlace, master_addr: str, master_port: int) -> dict[str, str]:
    """The variables torch's ``env://`` rendezvous reads, for a rank the simulator starts.

    ``TORCHELASTIC_USE_AGENT_STORE`` makes every rank a client of the TCPStore the
    simulator hosts, as under ``torchrun``, so rank 0 need not be first to start.
    """
    return {
        "RANK": str(place.rank),
        "WORLD_SIZE": str(place.world),
        "LOCAL_RANK": str(place.local_rank),
        "LOCAL_WORLD_SIZE": str(place.local_world),
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "TORCHELASTIC_USE_AGENT_STORE": "True",
    }
