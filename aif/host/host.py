"""The AIM host: runs one AIM instance and speaks the AIM API to its controller.

The same host runs every placement. ``inproc``: an asyncio task inside the
controller's process (sharing its ZeroMQ context, so channels can be ``inproc://``).
``process``: ``python -m aif.host`` as a child the controller supervises (``serve``).
``remote``: ``aif aim serve package.module:Class --controller tcp://...`` started by
hand, possibly on another machine. The AIM code cannot tell which.

A remote host brings its own class (the controller only checks that it is the one
the workflow declares), binds its tcp readers on the interface that faces the
controller, and leaves cleanly, saying why in its ``bye``: when its AIM is done,
when it is interrupted (SIGINT, SIGTERM), when the controller refuses it or does not
answer within ``connect_timeout``, and when the connection to the controller drops
after registration (the controller died or its machine went away), so that it never
waits for a controller that is gone.

The host owns the AIM's lifecycle over the AIM API: it registers, has the AIM's
runtime (``runtime``: what the AIM sees, its storage, channels and events) bind
its input readers at setup and connect its writers at wiring, binds a control reader
whose high lane carries the controller's lifecycle signals, pumps the readers into
the event stream, sends heartbeats, runs and tears the AIM down, and says ``bye``
(over its ``link``). Where it is in that life is one ``HostState`` (``lifecycle``),
which also gives what the ``bye`` says and the exit status.

Secure profile: a remote host dials a CURVE AIM API as a CURVE client with its own
identity (``identity``) and the controller's public key (``server_key``: given with
``--server-key``, or the key trusted for that endpoint); the controller must trust the
host's key. A secure run's tcp channels, the control lane included, use the run's
channel keys from ``setup`` (``aif.communication.channel``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from pathlib import Path
from typing import Any

import zmq.asyncio

from aif.aims.base import AIM
from aif.aims.registry import resolve_aim_type
from aif.api import aim as aim_api
from aif.communication.addresses import facing_interface
from aif.communication.channel import ChannelEndpoints, ChannelReader
from aif.communication.ports import Signal, SignalCode
from aif.errors import AIFError, ConfigError
from aif.host import lifelines
from aif.host.lifecycle import HostLifecycle, HostState
from aif.host.link import ControllerLink
from aif.host.runtime import HostRuntime
from aif.security.curve import CurveKeys, CurvePair

log = logging.getLogger("aif.host")

#: How long a host waits for each controller reply before giving up.
CONTROLLER_TIMEOUT = 30.0
#: How long a host that is set up waits for wiring and start: the other AIMs of its
#: workflow may take long to set up (loading models), and the controller sends
#: ``terminate`` itself when it gives up on them, so this only bounds a lost controller.
PEER_TIMEOUT = 900.0


class AIMHost:
    """Runs one AIM: registration, wiring, the event stream, heartbeats, lifecycle."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        controller: str,
        aim: str,
        *,
        workflow: str | None = None,
        type_text: str | None = None,
        watch_parent: bool = False,
        connect_timeout: float = CONTROLLER_TIMEOUT,
        handle_signals: bool = False,
        state_dir: Path | None = None,
        identity: CurvePair | None = None,
        server_key: bytes | None = None,
    ) -> None:
        """``identity`` and ``server_key``: dial a tcp AIM API with CURVE (secure profile)."""
        self.ctx = ctx
        self.controller_endpoint = controller
        self.name = aim
        #: The AIM type a remote host brings; None: the controller's ``setup`` names it.
        self.type_text = type_text
        self.connect_timeout = connect_timeout
        self._handle_signals = handle_signals
        #: Over tcp the controller may be on another machine: watch the connection.
        self._over_tcp = controller.startswith("tcp://")
        #: A child host ends itself when its controller process dies (no orphans).
        self._parent = os.getppid() if watch_parent else None
        self._cls: type[AIM] | None = None
        self._serving: asyncio.Task[Any] | None = None
        #: Where the host is in its life, and why it must go (signal, lost controller).
        self.lifecycle = HostLifecycle(aim)
        #: Where a remote host keeps storage on its own machine (default: the controller's
        #: state directory path, which is right when both share a machine or a file system).
        self._own_state_dir = state_dir
        if server_key is not None and identity is None:
            raise ConfigError(f"AIM {aim!r}: a server key needs this host's own CURVE key pair")
        curve = (identity, server_key) if identity and server_key and self._over_tcp else None
        #: The AIM API connection to the controller.
        self._link = ControllerLink(ctx, controller, aim, curve, remote=bool(type_text))
        self._control: ChannelReader | None = None
        #: What the AIM sees of its host: storage, its channels, its events.
        self._runtime = HostRuntime(ctx, aim, workflow or "", self._link.send)
        self._aim: AIM | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._run_task: asyncio.Task[None] | None = None

    async def serve(self) -> int:
        """Register, set up, run and tear down the AIM. Returns the exit status."""
        self.lifecycle.require(HostState.CREATED, "serve")
        self._serving = asyncio.current_task()
        with contextlib.ExitStack() as stack:
            if self._handle_signals:
                stack.enter_context(lifelines.leave_on_signals(self._leave))
            try:
                self._connect()
                if self._parent is not None:
                    watch = lifelines.watch_parent(self._parent, self._leave)
                    self._tasks.append(asyncio.create_task(watch))
                await self._serve()
            except AIFError as exc:
                log.error("%s", exc)
            except asyncio.CancelledError:
                if self.lifecycle.leaving is None:
                    raise
                await self._teardown()  # left while waiting to be wired or started
            finally:
                if self.lifecycle.leaving is not None:
                    log.error("AIM %r: %s; exiting", self.name, self.lifecycle.leaving.reason)
                await self._close()
        assert self.lifecycle.ending is not None
        return self.lifecycle.ending.status

    def _connect(self) -> None:
        """Open the AIM API socket; over tcp, watch it for a controller that goes away."""
        self._link.open()
        if self._link.monitor is not None:
            curve = self._link.curve
            watch = lifelines.watch_controller(
                self._link.monitor,
                self.controller_endpoint,
                lambda: self.lifecycle.registered,
                lambda: self.lifecycle.finished,
                self._leave,
                own_key=curve[0].public if curve is not None else None,
            )
            self._tasks.append(asyncio.create_task(watch))
        self.lifecycle.to(HostState.CONNECTED)
        self._say("connecting to the controller at %s", self.controller_endpoint)

    def _leave(self, reason: str, status: int) -> None:
        """Go now: abort a running AIM (its teardown still runs), else stop serving."""
        first = self.lifecycle.leave(reason, status)
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()
        elif self._serving is not None and (not first or not self.lifecycle.finished):
            self._serving.cancel()  # a second signal also cuts a slow teardown short

    async def _serve(self) -> None:
        """Walk the AIM API up to the run; how it ended is the state it stops in."""
        brought = None
        if self.type_text is not None:
            self._cls = resolve_aim_type(self.type_text, state_dir=self._own_state_dir)
            brought = self._cls.class_path()
        await self._link.send(
            aim_api.Hello(
                aim=self.name,
                workflow=self._runtime.workflow or None,
                pid=os.getpid(),
                type=brought,
                host=socket.gethostname() if brought is not None else None,
            )
        )
        setup = await self._link.expect(aim_api.Setup, self.connect_timeout)
        if setup is None:
            self.lifecycle.to(HostState.REFUSED)
            return
        self.lifecycle.to(HostState.REGISTERED)
        self._say("registered with run %s; setting up", setup.workflow)
        try:
            await self._setup(setup)
        except Exception as exc:
            await self._link.send(aim_api.Failed(aim=self.name, error=_describe(exc, "setup")))
            self.lifecycle.to(HostState.SETUP_FAILED)
            return
        self._tasks.append(asyncio.create_task(self._link.heartbeat(setup.heartbeat_interval)))
        self._say("ready; waiting for the other AIMs of the run")
        wire = await self._link.expect(aim_api.Wire, PEER_TIMEOUT)
        if wire is None:
            await self._teardown()
            return
        self._wire(wire)
        await self._link.send(aim_api.Wired(aim=self.name))
        if await self._link.expect(aim_api.Start, PEER_TIMEOUT) is None:
            await self._teardown()
            return
        self._say("running")
        await self._run()

    async def _setup(self, setup: aim_api.Setup) -> None:
        cls = self._cls or resolve_aim_type(setup.type, state_dir=Path(setup.state_dir))
        params = cls.validate_params(setup.params)
        # A remote host writes results where it runs, not where the controller's user is.
        work_dir = Path.cwd() if self._over_tcp or not setup.work_dir else Path(setup.work_dir)
        self._runtime.place(
            setup.workflow,
            self._own_state_dir or Path(setup.state_dir),
            Path(setup.base_dir),
            work_dir,
            setup.storage,
        )
        ipc_dir = Path(setup.ipc_dir)
        # A remote host's readers must be reachable from the controller's machine.
        bind_host = facing_interface(self.controller_endpoint) if self._over_tcp else setup.tcp_host
        self._runtime.bind_inputs(cls.port_specs(), setup, ipc_dir, bind_host)
        self._control = ChannelReader(
            self.ctx,
            "control",
            setup.control_transport,
            ipc_dir=ipc_dir,
            queue_size=16,
            tcp_host=bind_host,
            curve=CurveKeys.of(setup.channel_keys),
        )
        self._aim = cls(self._runtime, params)
        self._runtime.aim = self._aim
        self._runtime.stream.drain_on_stop = cls.drain_on_stop
        await self._aim.setup()
        self.lifecycle.to(HostState.SET_UP)
        ready = aim_api.Ready(
            aim=self.name,
            inputs={p: _api_endpoints(r.endpoints) for p, r in self._runtime.readers.items()},
            control=_api_endpoints(self._control.endpoints),
            capabilities=dict(self._aim.capabilities()),
        )
        await self._link.send(ready)

    def _wire(self, wire: aim_api.Wire) -> None:
        self._runtime.connect_outputs(wire, self.controller_endpoint)
        for reader in self._runtime.readers.values():
            self._tasks.append(asyncio.create_task(self._runtime.stream.pump(reader)))
        assert self._control is not None and self._aim is not None
        watch = self._watch_control(self._control, self._aim)
        self._tasks.append(asyncio.create_task(watch))
        self.lifecycle.to(HostState.WIRED)

    async def _run(self) -> None:
        assert self._aim is not None
        self.lifecycle.to(HostState.RUNNING)
        await self._link.send(aim_api.StateChange(aim=self.name, state="running"))
        self._run_task = asyncio.create_task(self._aim.run())
        ended = HostState.FAILED
        try:
            await self._run_task
        except asyncio.CancelledError:
            leaving = self.lifecycle.leaving
            why = leaving.reason if leaving else "aborted by the controller"
            await self._link.send(aim_api.Failed(aim=self.name, error=why))
        except Exception as exc:
            await self._link.send(aim_api.Failed(aim=self.name, error=_describe(exc, "run")))
        else:
            try:
                await self._runtime.end_outputs()
            except Exception as exc:
                await self._link.send(
                    aim_api.Failed(aim=self.name, error=_describe(exc, "closing outputs"))
                )
            else:
                await self._link.send(aim_api.Done(aim=self.name))
                ended = HostState.DONE
        self.lifecycle.to(ended)
        self._say("%s; tearing down", ended.value)
        await self._teardown()

    async def _teardown(self) -> None:
        """``AIM.teardown`` once, if its ``setup`` completed (a failed setup cleans up itself).

        The host lets go of the AIM as it starts, so a second call (a leave that cut the
        first short) does nothing.
        """
        if self._aim is None or not self.lifecycle.state.aim_set_up:
            return
        aim, self._aim = self._aim, None
        try:
            await aim.teardown()
        except Exception:
            log.exception("AIM %r: teardown failed", self.name)

    async def _watch_control(self, reader: ChannelReader, aim: AIM) -> None:
        """Apply the controller's lifecycle signals even while the AIM computes."""
        stream = self._runtime.stream
        while True:
            event = await reader.recv()
            if not isinstance(event, Signal):
                continue
            code = event.code
            if code == SignalCode.SUSPEND and stream.resumed.is_set():
                stream.resumed.clear()
                await aim.on_suspend()
                await self._link.send(aim_api.StateChange(aim=self.name, state="suspended"))
            elif code == SignalCode.RESUME and not stream.resumed.is_set():
                await aim.on_resume()
                stream.resumed.set()
                await self._link.send(aim_api.StateChange(aim=self.name, state="running"))
            elif code == SignalCode.STOP:
                stream.stopping = True
                stream.resumed.set()
                stream.signal(Signal(code=code, port=None))
                await self._link.send(aim_api.StateChange(aim=self.name, state="stopping"))
            elif code == SignalCode.ABORT:
                if self._run_task is not None:
                    self._run_task.cancel()
            else:
                stream.signal(Signal(code=code, port=None))

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._runtime.close()
        if self._control is not None:
            self._control.close()
        ending = self.lifecycle.end()
        if await self._link.close(ending.reason) and ending.last.registered:
            self._say("deregistered (%s)", ending.reason)

    def _say(self, text: str, *args: object) -> None:
        """A lifecycle line for the person who started a remote host (quiet in children)."""
        log.log(logging.INFO if self.type_text else logging.DEBUG, text, *args)


def _api_endpoints(endpoints: ChannelEndpoints) -> aim_api.Endpoints:
    return aim_api.Endpoints(normal=endpoints.normal, high=endpoints.high)


def _describe(exc: BaseException, phase: str) -> str:
    """One readable line plus the innermost frame, for the controller to report."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__} in {phase}: {exc}{where}"
