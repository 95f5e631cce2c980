"""What a simulator can run, and choosing one that can run a given job.

A simulator declares its capabilities when it registers (``AIM.capabilities``),
measured in its own process: the devices it has (``cpu``, ``cuda`` when torch sees a
GPU) and, per device, the tile kinds it can drive there (``torch`` tiles need only
torch; ``rpucuda`` tiles need aihwkit's C++ extension, compiled with CUDA for
``cuda``), plus the RPU config families it accepts. The controller hands these to the
validator with its wiring, and the validator routes each accepted job to the least
loaded simulator that can run it, or rejects the job naming what would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pydantic

from aif.aims.base import Peer

#: ``role`` of a simulator's capabilities.
SIMULATOR_ROLE = "analog-simulator"
Device = Literal["cpu", "cuda"]
TileKind = Literal["torch", "rpucuda"]


class SimulatorCapabilities(pydantic.BaseModel):
    """A simulator's declaration, as carried in the AIM API's ``ready`` message."""

    model_config = pydantic.ConfigDict(extra="ignore")
    role: Literal["analog-simulator"] = "analog-simulator"
    devices: dict[Device, list[TileKind]]
    families: list[str]

    def devices_for(self, family: str, kind: TileKind, wanted: str) -> list[Device]:
        """Devices of this simulator that can run ``family`` tiles of ``kind`` (best first)."""
        if family not in self.families:
            return []
        able = [d for d, kinds in self.devices.items() if kind in kinds]
        if wanted in ("cpu", "cuda"):
            able = [d for d in able if d == wanted]
        return sorted(able, key=lambda d: d != "cuda")

    def describe(self) -> str:
        """``cpu (torch, rpucuda); families: InferenceRPUConfig, ...``."""
        devices = ", ".join(f"{d} ({', '.join(k)})" for d, k in self.devices.items())
        return f"{devices}; families: {', '.join(self.families)}"


def simulators(peers: Sequence[Peer]) -> dict[str, SimulatorCapabilities]:
    """The peers that declared themselves analog simulators, by AIM name."""
    found: dict[str, SimulatorCapabilities] = {}
    for peer in peers:
        if peer.capabilities.get("role") != SIMULATOR_ROLE:
            continue
        try:
            found[peer.aim] = SimulatorCapabilities.model_validate(dict(peer.capabilities))
        except pydantic.ValidationError:
            continue  # a peer with a garbled declaration cannot be trusted to run anything
    return found


def choose_simulator(
    candidates: Mapping[str, SimulatorCapabilities],
    load: Mapping[str, int],
    *,
    family: str,
    kind: TileKind,
    device: str,
    torch_families: Sequence[str] = (),
) -> tuple[str, Device] | str:
    """``(aim, device)`` of the least loaded simulator able to run the job, else why not.

    ``device`` is what the experiment asked for: ``cpu``, ``cuda`` or ``auto``
    (a GPU when some simulator has one for this kind of tile, else the CPU).
    ``torch_families`` (families with pure-torch tiles) let the refusal say what
    would run on a GPU whose aihwkit was built without CUDA.
    """
    options: list[tuple[int, int, str, Device]] = []
    for aim, caps in candidates.items():
        for rank, dev in enumerate(caps.devices_for(family, kind, device)):
            options.append((rank, load.get(aim, 0), aim, dev))
    if options:
        if device == "auto" and any(dev == "cuda" for *_, dev in options):
            options = [o for o in options if o[3] == "cuda"]
        _, _, aim, dev = min(options, key=lambda o: (o[1], o[0], o[2]))
        return aim, dev
    what = f"{family} ({'pure torch' if kind == 'torch' else 'aihwkit RPUCuda'} tiles)"
    where = {"cpu": "on cpu", "cuda": "on cuda", "auto": ""}.get(device, "")
    reasons = "; ".join(
        _why_not(aim, caps, family, kind, device, torch_families)
        for aim, caps in candidates.items()
    )
    problem = f"no connected simulator can run {what} {where}".rstrip()
    return f"{problem} ({reasons}).{_what_would(candidates, family, kind, device)}"


_KINDS = {"torch": "pure torch", "rpucuda": "aihwkit RPUCuda (C++ extension)"}


def _why_not(
    aim: str,
    caps: SimulatorCapabilities,
    family: str,
    kind: TileKind,
    device: str,
    torch_families: Sequence[str],
) -> str:
    """What one simulator lacks to run ``family`` tiles of ``kind`` on ``device``."""
    if family not in caps.families:
        return f"{aim} does not run {family}; it runs {', '.join(caps.families) or 'nothing'}"
    if device == "cuda" and "cuda" not in caps.devices:
        return f"{aim} has no GPU"
    if device == "cuda" and kind == "rpucuda" and "torch" in caps.devices["cuda"]:
        families = ", ".join(f for f in torch_families if f in caps.families) or "torch tiles"
        return (
            f"{aim} has a GPU but its aihwkit was built without CUDA, so only torch-tile "
            f"families ({families}) run on cuda there"
        )
    places = [device] if device in ("cpu", "cuda") else list(caps.devices)
    on = " or ".join(places)
    return f"{aim} lists {family} but has no {_KINDS[kind]} tiles on {on}"


def _what_would(
    candidates: Mapping[str, SimulatorCapabilities], family: str, kind: TileKind, device: str
) -> str:
    """The way out: another device, another family, or another simulator."""
    if device == "cuda":
        elsewhere = any(caps.devices_for(family, kind, "cpu") for caps in candidates.values())
        cpu = " Set 'device: cpu' or 'auto'" if elsewhere else " Use another family"
        gpu = any("cuda" in caps.devices for caps in candidates.values())
        if gpu and kind == "rpucuda":
            return (
                f"{cpu}, use a torch-tile family on cuda, or connect a simulator whose aihwkit "
                "was built with CUDA."
            )
        return f"{cpu}, or connect a simulator on a machine with a GPU."
    return (
        f" Connect an analog-simulator that runs {family} with {_KINDS[kind]} tiles, or pick "
        "a family a connected simulator runs."
    )


def declare(devices: Mapping[str, Sequence[str]], families: Sequence[str]) -> dict[str, Any]:
    """A simulator's ``capabilities()`` value (plain data, msgpack-able)."""
    return SimulatorCapabilities.model_validate(
        {"devices": {d: list(k) for d, k in devices.items()}, "families": list(families)}
    ).model_dump(mode="json")
