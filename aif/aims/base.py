"""The AIM base class: what an AI Module declares and what it may call.

An AIM declares its typed ports and parameters as class attributes and implements
``run``. Everything it does with the outside world goes through the methods here,
which delegate to the runtime the AIM host supplies, so the same class runs inproc,
in a child process or in a remote host without knowing which::

    class Doubler(AIM):
        \"\"\"Doubles every number it receives.\"\"\"

        inputs = {"x": "float64"}
        outputs = {"y": "float64"}

        async def run(self) -> None:
            async for event in self.events():
                if isinstance(event, Record):
                    await self.send("y", event.value * 2)

Lifecycle (driven by the host): ``setup`` → ``run`` (⇄ ``on_suspend``/``on_resume``)
→ ``teardown``. ``run`` returning means the AIM is done; its output ports are then
closed (end-of-stream), which is how a workflow knows it has finished. Heavy
synchronous compute belongs in ``await asyncio.to_thread(...)`` with
``await self.checkpoint()`` between steps, so heartbeats and signals keep flowing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pydantic

from aif.communication.ports import AIMEvent, PortSpec

if TYPE_CHECKING:
    from aif.api.aim import EventTopic
    from aif.storage.base import Storage


@dataclass(frozen=True)
class Peer:
    """An AIM an output port sends to, with the capabilities it declared when it registered."""

    aim: str
    port: str
    capabilities: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_target(cls, target: str, capabilities: Mapping[str, Any]) -> Peer:
        """From the AIM API's ``aim.port`` (or ``controller:aim.port`` for a collector)."""
        aim, _, port = target.rpartition(".")
        return cls(aim=aim, port=port, capabilities=dict(capabilities))


class AIMRuntime(Protocol):
    """What an AIM host provides to the AIM it runs (one verb per need)."""

    name: str
    workflow: str
    state_dir: Path
    base_dir: Path
    work_dir: Path
    #: True in a ``profile: secure`` run.
    secure: bool

    @property
    def storage(self) -> Storage: ...
    @property
    def global_storage(self) -> Storage: ...

    async def send(self, port: str, value: Any, to: str | None = None) -> None: ...
    def peers(self, port: str) -> list[Peer]: ...
    async def send_signal(self, port: str, code: int) -> None: ...
    def events(self) -> AsyncIterator[AIMEvent]: ...
    async def checkpoint(self) -> bool: ...
    async def emit(self, topic: EventTopic, data: Mapping[str, Any]) -> None: ...
    @property
    def stopping(self) -> bool: ...


class AIM:
    """Base of every AI Module. Subclass it, declare ports, implement ``run``."""

    #: Input ports: name -> MPAI-AIF type string (``"tensor<float32>[?,64]"``).
    inputs: ClassVar[Mapping[str, str]] = {}
    #: Output ports: name -> MPAI-AIF type string.
    outputs: ClassVar[Mapping[str, str]] = {}
    #: Parameter model (pydantic, ``extra="forbid"``); None means "takes no parameters".
    Params: ClassVar[type[pydantic.BaseModel] | None] = None
    #: Version of this AIM implementation (MPAI-AIF ``Specification.Version``).
    version: ClassVar[str] = "1.0.0"
    #: MPAI-AIF ``ImplementerID``.
    implementer: ClassVar[str] = "aif"
    #: MPAI-AIF ``Technology`` of the ports: ``Software`` or ``Hardware``.
    technology: ClassVar[str] = "Software"
    #: A sink that must keep what its upstream sends while stopping (partial results)
    #: sets this: after a stop its ``events()`` ends only once every writer closed.
    drain_on_stop: ClassVar[bool] = False
    #: Queues of the controller daemon (device classes: ``validation``, ``cpu``, ``cuda``,
    #: ``imc``, or a plug-in's own) a job with this AIM runs in, preferred first. Empty:
    #: a light AIM that needs no instance of its own.
    queues: ClassVar[tuple[str, ...]] = ()

    def __init__(self, runtime: AIMRuntime, params: pydantic.BaseModel | None) -> None:
        self._runtime = runtime
        self.params = params
        self.log = logging.getLogger(f"aif.aim.{runtime.name}")

    # -- declarations ---------------------------------------------------------------

    @classmethod
    def port_specs(cls) -> dict[str, PortSpec]:
        """Parsed input and output ports (raises ``TypeSyntaxError`` on a bad type)."""
        cached: dict[str, PortSpec] | None = cls.__dict__.get("_aif_port_specs")
        if cached is None:
            cached = {}
            for name, text in cls.inputs.items():
                cached[name] = PortSpec.parse(name, "input", text)
            for name, text in cls.outputs.items():
                cached[name] = PortSpec.parse(name, "output", text)
            cls._aif_port_specs = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def validate_params(cls, params: Mapping[str, Any] | None) -> pydantic.BaseModel | None:
        """Validate YAML parameters against ``Params`` (raises ``pydantic.ValidationError``)."""
        if cls.Params is None:
            if params:
                raise ValueError(
                    f"{cls.__name__} takes no parameters, got {sorted(params)}; remove 'params'"
                )
            return None
        return cls.Params.model_validate(dict(params or {}))

    @classmethod
    def resources(cls, params: pydantic.BaseModel | None) -> tuple[str, ...]:
        """The daemon queues a job with this AIM may run in, preferred first.

        The class's ``queues``; override it when parameters decide (a simulator asked
        for ``cuda`` needs a GPU instance, one on ``auto`` takes either).
        """
        return cls.queues

    @classmethod
    def description(cls) -> str:
        """First paragraph of the class docstring (MPAI-AIF ``Description``)."""
        doc = inspect.getdoc(cls) or ""
        return doc.split("\n\n", 1)[0].replace("\n", " ").strip()

    @classmethod
    def class_path(cls) -> str:
        """``package.module:Class`` spelling, usable as a workflow ``type``."""
        return f"{cls.__module__}:{cls.__qualname__}"

    # -- what the AIM may call --------------------------------------------------------

    @property
    def name(self) -> str:
        """This instance's name in its workflow."""
        return self._runtime.name

    @property
    def workflow(self) -> str:
        """The id of the workflow instance this AIM runs in."""
        return self._runtime.workflow

    @property
    def storage(self) -> Storage:
        """AIM Storage: private to this AIM, on the controller's state directory."""
        return self._runtime.storage

    @property
    def global_storage(self) -> Storage:
        """Global Storage: shared by the AIMs of this AIF."""
        return self._runtime.global_storage

    @property
    def secure(self) -> bool:
        """True in a ``profile: secure`` run: trust only code from signed Store packages."""
        return self._runtime.secure

    @property
    def state_dir(self) -> Path:
        """The controller's state directory (its Store install cache is ``packages/``)."""
        return self._runtime.state_dir

    @property
    def base_dir(self) -> Path:
        """The workflow file's folder: read relative paths in parameters from here."""
        return self._runtime.base_dir

    @property
    def work_dir(self) -> Path:
        """The folder of whoever started the run (``aif run``'s, or ``aif submit``'s for a
        daemon): write results for the user here, not in the controller's folder."""
        return self._runtime.work_dir

    @property
    def stopping(self) -> bool:
        """True once the AIM has been told to stop: finish up and return from ``run``."""
        return self._runtime.stopping

    async def send(self, port: str, value: Any, to: str | None = None) -> None:
        """Send ``value`` on output ``port`` (waits when full).

        It goes to every connected input, or with ``to`` only to that AIM's: routing a
        job to one of several workers (see ``peers``).
        """
        await self._runtime.send(port, value, to)

    def peers(self, port: str) -> list[Peer]:
        """The AIMs output ``port`` reaches, with their capabilities (known once wired)."""
        return self._runtime.peers(port)

    async def send_signal(self, port: str, code: int) -> None:
        """Send a uint16 high-priority code on output ``port``; it overtakes queued records."""
        await self._runtime.send_signal(port, code)

    def events(self) -> AsyncIterator[AIMEvent]:
        """Records and signals from the inputs, ending with ``Stop`` when inputs close.

        Waits while the AIM is suspended. Signals come before any queued record.
        """
        return self._runtime.events()

    async def checkpoint(self) -> bool:
        """Yield to the runtime between steps of long work.

        Waits here while suspended; returns False once the AIM should stop.
        """
        return await self._runtime.checkpoint()

    async def progress(self, **data: Any) -> None:
        """Publish a progress event (e.g. ``epoch=3, loss=0.2``) for watchers."""
        await self._runtime.emit("progress", data)

    async def result(self, **data: Any) -> None:
        """Publish a result event: values the workflow run reports at its end."""
        await self._runtime.emit("result", data)

    # -- lifecycle hooks (override as needed) -------------------------------------------

    def capabilities(self) -> Mapping[str, Any]:
        """What this instance can do, declared at registration (msgpack-able values).

        Called in the AIM's own process after ``setup``, so it can report what it
        found there (a GPU, a chip); AIMs that send to it see it in ``peers``.
        """
        return {}

    async def setup(self) -> None:
        """Acquire resources before any record flows (open devices, load models)."""

    async def run(self) -> None:
        """Do the work. The default relays nothing and returns when the inputs close."""
        async for _ in self.events():
            pass

    async def on_suspend(self) -> None:
        """Called when the workflow is suspended (release devices if needed)."""

    async def on_resume(self) -> None:
        """Called when the workflow resumes."""

    async def teardown(self) -> None:
        """Release resources; called once, after ``run`` ends, even when it failed."""
