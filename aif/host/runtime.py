"""What a hosted AIM sees of its runtime: the ``AIMRuntime`` an AIM host hands its AIM.

``HostRuntime`` is the AIM's side of its host: its identity in the run (name,
workflow, state and base directories), its storage, its input readers and the event
stream they are pumped into (``event_stream``), and its output writers with the peer
behind each, which ``send``, ``send_signal`` and ``peers`` address. ``emit`` reports
progress and results to the controller through the host. The host builds it, binds
and connects its channels as the controller sets up and wires the run, and closes
them; the AIM only gets these verbs, never the host's lifecycle over the AIM API
(``host``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pydantic
import zmq.asyncio

from aif.aims.base import AIM, Peer
from aif.api import aim as aim_api
from aif.communication.addresses import dialable
from aif.communication.channel import ChannelEndpoints, ChannelReader, ChannelWriter
from aif.communication.limits import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_QUEUE_SIZE
from aif.communication.ports import AIMEvent, PortSpec
from aif.errors import ChannelError
from aif.host.event_stream import EventStream
from aif.security.curve import CurveKeys
from aif.storage.base import Storage
from aif.storage.local import aim_storage, global_storage

#: How the runtime sends an AIM API message to the controller (the host's connection).
ApiSend = Callable[[pydantic.BaseModel], Awaitable[None]]


class HostRuntime:
    """The ``AIMRuntime`` of one hosted AIM: identity, storage, channels, events."""

    def __init__(
        self, ctx: zmq.asyncio.Context, name: str, workflow: str, api_send: ApiSend
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.workflow = workflow
        self.state_dir = Path(".")
        self.base_dir = Path(".")
        self.work_dir = Path.cwd()
        #: A secure-profile run (the controller granted storage keys), set by ``place``.
        self.secure = False
        #: The AIM this runtime serves, once the host has made it.
        self.aim: AIM | None = None
        #: One reader per input port, pumped into ``stream`` once wired.
        self.readers: dict[str, ChannelReader] = {}
        #: The ordered events the AIM reads; the host also applies control signals to it.
        self.stream = EventStream()
        self._writers: dict[str, list[ChannelWriter]] = {}
        #: The AIM behind each writer, index for index with ``_writers``.
        self._peers: dict[str, list[Peer]] = {}
        self._storage: Storage | None = None
        self._global: Storage | None = None
        self._api_send = api_send
        #: A secure run's channel keys (from ``setup``): its tcp channels use CURVE.
        self._curve: CurveKeys | None = None

    # -- AIMRuntime ------------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        assert self._storage is not None, "storage is available after setup"
        return self._storage

    @property
    def global_storage(self) -> Storage:
        assert self._global is not None, "storage is available after setup"
        return self._global

    @property
    def stopping(self) -> bool:
        return self.stream.stopping

    async def send(self, port: str, value: Any, to: str | None = None) -> None:
        writers = self._writers_for(port)
        if to is not None:
            writers = self._writers_to(port, to)
        if len(writers) == 1:
            await writers[0].send(value)
        else:
            await asyncio.gather(*(w.send(value) for w in writers))

    async def send_signal(self, port: str, code: int) -> None:
        for writer in self._writers_for(port):
            await writer.send_signal(code)

    def peers(self, port: str) -> list[Peer]:
        self._writers_for(port)
        return list(self._peers.get(port, []))

    def _writers_to(self, port: str, aim: str) -> list[ChannelWriter]:
        peers = self._peers.get(port, [])
        chosen = [w for w, p in zip(self._writers[port], peers, strict=True) if p.aim == aim]
        if not chosen:
            known = ", ".join(sorted({p.aim for p in peers})) or "none"
            raise ChannelError(
                f"AIM {self.name!r}: output {port!r} is not connected to AIM {aim!r}; "
                f"it reaches: {known}"
            )
        return chosen

    def _writers_for(self, port: str) -> list[ChannelWriter]:
        try:
            return self._writers[port]
        except KeyError:
            assert self.aim is not None
            known = ", ".join(self.aim.outputs) or "none"
            raise ChannelError(
                f"AIM {self.name!r} has no output port {port!r}; its output ports: {known}"
            ) from None

    def events(self) -> AsyncIterator[AIMEvent]:
        return self.stream.events()

    async def checkpoint(self) -> bool:
        await self.stream.resumed.wait()
        await asyncio.sleep(0)
        return not self.stream.stopping

    async def emit(self, topic: aim_api.EventTopic, data: Mapping[str, Any]) -> None:
        await self._api_send(aim_api.EventMessage(aim=self.name, topic=topic, data=dict(data)))

    # -- what the host does to it as the controller sets up, wires and ends the run ----

    def place(
        self,
        workflow: str,
        state_dir: Path,
        base_dir: Path,
        work_dir: Path,
        storage: aim_api.StorageGrant | None = None,
    ) -> None:
        """Put the AIM in its run: its workflow, directories and storage.

        With a ``storage`` grant (the secure profile) both storages encrypt every
        object with the keys the controller derived for this AIM; they live apart from
        the basic profile's plain ones, so neither profile reads the other's objects.
        """
        self.workflow = workflow
        self.state_dir = state_dir
        self.base_dir = base_dir
        self.work_dir = work_dir
        self.secure = storage is not None
        if storage is None:
            self._storage = aim_storage(self.state_dir, self.name)
            self._global = global_storage(self.state_dir)
            return
        from aif.storage.secure import secure_aim_storage, secure_global_storage

        self._storage = secure_aim_storage(self.state_dir, self.name, storage.aim_keys())
        self._global = secure_global_storage(self.state_dir, storage.shared_keys())

    def bind_inputs(
        self, specs: Mapping[str, PortSpec], setup: aim_api.Setup, ipc_dir: Path, tcp_host: str
    ) -> None:
        """Bind one reader per input port, as the controller's ``setup`` says.

        A secure run's ``channel_keys`` are kept for the writers too (``connect_outputs``).
        """
        self._curve = CurveKeys.of(setup.channel_keys)
        for port, spec in specs.items():
            if spec.direction != "input":
                continue
            self.readers[port] = ChannelReader(
                self.ctx,
                port,
                setup.transports[port],
                ipc_dir=ipc_dir,
                queue_size=setup.queue_sizes.get(port, DEFAULT_QUEUE_SIZE),
                max_message_size=setup.max_message_sizes.get(port, DEFAULT_MAX_MESSAGE_SIZE),
                tcp_host=tcp_host,
                curve=self._curve,
            )

    def connect_outputs(self, wire: aim_api.Wire, controller: str) -> None:
        """Connect one writer per connection of each output port (dialled via the
        controller's address), and count the writers that feed each input."""
        assert self.aim is not None
        specs = self.aim.port_specs()
        for port, targets in wire.outputs.items():
            self._writers[port] = [
                ChannelWriter(
                    self.ctx,
                    port,
                    ChannelEndpoints(
                        normal=dialable(t.endpoints.normal, controller),
                        high=dialable(t.endpoints.high, controller),
                    ),
                    record_type=specs[port].type,
                    queue_size=t.queue_size,
                    max_message_size=t.max_message_size,
                    curve=self._curve,
                )
                for t in targets
            ]
            self._peers[port] = [Peer.from_target(t.target, t.capabilities) for t in targets]
        for port in self.aim.outputs:
            self._writers.setdefault(port, [])
        self.stream.open_writers = {p: n for p, n in wire.writers.items() if n > 0}

    async def end_outputs(self) -> None:
        """Send end-of-stream on every output (the AIM is done)."""
        for writers in self._writers.values():
            for writer in writers:
                await writer.send_eos()

    def close(self) -> None:
        """Close every writer and reader."""
        for writers in self._writers.values():
            for writer in writers:
                writer.close()
        for reader in self.readers.values():
            reader.close()
