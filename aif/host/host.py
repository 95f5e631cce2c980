"""The AIM host: runs one AIM instance and speaks the AIM API to its controller.

The same host runs every placement. ``inproc``: an asyncio task inside the
controller's process (sharing its ZeroMQ context, so channels can be ``inproc://``).
``process``: ``python -m aif.host.host`` as a child the controller supervises.
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
runtime (``host_runtime``: what the AIM sees, its storage, channels and events) bind
its input readers at setup and connect its writers at wiring, binds a control reader
whose high lane carries the controller's lifecycle signals, pumps the readers into
the event stream, sends heartbeats, runs and tears the AIM down, and says ``bye``.

Secure profile: a remote host dials a CURVE AIM API as a CURVE client with its own
identity (``identity``) and the controller's public key (``server_key``: given with
``--server-key``, or the key trusted for that endpoint); the controller must trust the
host's key. A secure run's tcp channels, the control lane included, use the run's
channel keys from ``setup`` (``aif.communication.channel``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import zmq
import zmq.asyncio

from aif.aims.base import AIM
from aif.aims.registry import resolve_aim_type
from aif.api import aim as aim_api
from aif.communication.addresses import facing_interface
from aif.communication.channel import ChannelEndpoints, ChannelReader
from aif.communication.ports import Signal, SignalCode
from aif.errors import AIFError, ConfigError, LifecycleError
from aif.host import lifelines
from aif.host.runtime import HostRuntime
from aif.security.curve import (
    CurveKeys,
    CurvePair,
    Gatekeeper,
    curve_client,
    key_text,
    trust_command,
)

log = logging.getLogger("aif.host")

_M = TypeVar("_M", aim_api.Setup, aim_api.Wire, aim_api.Start)

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
        #: Set once the host must go (signal, lost controller): why, and the exit status.
        self._leaving: tuple[str, int] | None = None
        #: Milestones: setup received, AIM.setup() done, run ended (done or failed
        #: sent: nothing left to abort), AIM.teardown() called.
        self._registered = False
        self._set_up = False
        self._finished = False
        self._torn_down = False
        #: What the host says in its bye when nothing cut it short.
        self._outcome = "exit"
        self._monitor: zmq.asyncio.Socket | None = None
        #: Where a remote host keeps storage on its own machine (default: the controller's
        #: state directory path, which is right when both share a machine or a file system).
        self._own_state_dir = state_dir
        self._dealer: zmq.asyncio.Socket | None = None
        if server_key is not None and identity is None:
            raise ConfigError(f"AIM {aim!r}: a server key needs this host's own CURVE key pair")
        self._curve = (identity, server_key) if identity and server_key and self._over_tcp else None
        self._control: ChannelReader | None = None
        #: What the AIM sees of its host: storage, its channels, its events.
        self._runtime = HostRuntime(ctx, aim, workflow or "", self._api_send)
        self._aim: AIM | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._run_task: asyncio.Task[None] | None = None

    async def serve(self) -> int:
        """Register, set up, run and tear down the AIM. Returns the exit status."""
        self._serving = asyncio.current_task()
        status = 1
        with contextlib.ExitStack() as stack:
            if self._handle_signals:
                stack.enter_context(lifelines.leave_on_signals(self._leave))
            try:
                self._connect()
                if self._parent is not None:
                    watch = lifelines.watch_parent(self._parent, self._leave)
                    self._tasks.append(asyncio.create_task(watch))
                status = await self._serve()
            except AIFError as exc:
                log.error("%s", exc)
            except asyncio.CancelledError:
                if self._leaving is None:
                    raise
                await self._teardown()  # left while waiting to be wired or started
            finally:
                if self._leaving is not None:
                    log.error("AIM %r: %s; exiting", self.name, self._leaving[0])
                    status = self._leaving[1]
                await self._close()
        return status

    def _connect(self) -> None:
        """Open the AIM API socket; over tcp, watch it for a controller that goes away."""
        dealer = self.ctx.socket(zmq.DEALER)
        self._dealer = dealer
        dealer.setsockopt(zmq.LINGER, 2000)
        if self._over_tcp:
            self._monitor = lifelines.monitor_connection(dealer)
            watch = lifelines.watch_controller(
                self._monitor,
                self.controller_endpoint,
                lambda: self._registered,
                lambda: self._finished,
                self._leave,
                own_key=self._curve[0].public if self._curve is not None else None,
            )
            self._tasks.append(asyncio.create_task(watch))
        if self._curve is not None:
            identity, server_key = self._curve
            curve_client(dealer, identity.public, identity.secret, server_key)
        try:
            dealer.connect(self.controller_endpoint)
        except zmq.ZMQError as exc:
            raise ConfigError(
                f"AIM {self.name!r}: cannot connect to the controller at "
                f"{self.controller_endpoint!r} ({exc}); give its address as tcp://HOST:PORT"
            ) from exc
        self._say("connecting to the controller at %s", self.controller_endpoint)

    def _leave(self, reason: str, status: int) -> None:
        """Go now: abort a running AIM (its teardown still runs), else stop serving."""
        first = self._leaving is None
        if first:
            self._leaving = (reason, status)
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()
        elif self._serving is not None and (not first or not self._finished):
            self._serving.cancel()  # a second signal also cuts a slow teardown short

    async def _serve(self) -> int:
        brought = None
        if self.type_text is not None:
            self._cls = resolve_aim_type(self.type_text, state_dir=self._own_state_dir)
            brought = self._cls.class_path()
        await self._api_send(
            aim_api.Hello(
                aim=self.name,
                workflow=self._runtime.workflow or None,
                pid=os.getpid(),
                type=brought,
                host=socket.gethostname() if brought is not None else None,
            )
        )
        setup = await self._expect(aim_api.Setup, self.connect_timeout)
        if setup is None:
            self._outcome = "refused"
            return 1
        self._registered = True
        self._say("registered with run %s; setting up", setup.workflow)
        try:
            await self._setup(setup)
        except Exception as exc:
            await self._api_send(aim_api.Failed(aim=self.name, error=_describe(exc, "setup")))
            self._outcome = "setup failed"
            return 1
        self._tasks.append(asyncio.create_task(self._heartbeat(setup.heartbeat_interval)))
        self._say("ready; waiting for the other AIMs of the run")
        wire = await self._expect(aim_api.Wire, PEER_TIMEOUT)
        if wire is None:
            await self._teardown()
            return 1
        self._wire(wire)
        await self._api_send(aim_api.Wired(aim=self.name))
        if await self._expect(aim_api.Start, PEER_TIMEOUT) is None:
            await self._teardown()
            return 1
        self._say("running")
        return await self._run()

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
        self._set_up = True
        ready = aim_api.Ready(
            aim=self.name,
            inputs={p: _api_endpoints(r.endpoints) for p, r in self._runtime.readers.items()},
            control=_api_endpoints(self._control.endpoints),
            capabilities=dict(self._aim.capabilities()),
        )
        await self._api_send(ready)

    def _wire(self, wire: aim_api.Wire) -> None:
        self._runtime.connect_outputs(wire, self.controller_endpoint)
        for reader in self._runtime.readers.values():
            self._tasks.append(asyncio.create_task(self._runtime.stream.pump(reader)))
        assert self._control is not None
        self._tasks.append(asyncio.create_task(self._watch_control(self._control)))

    async def _run(self) -> int:
        assert self._aim is not None
        await self._api_send(aim_api.StateChange(aim=self.name, state="running"))
        self._run_task = asyncio.create_task(self._aim.run())
        status = 0
        try:
            await self._run_task
        except asyncio.CancelledError:
            why = self._leaving[0] if self._leaving else "aborted by the controller"
            await self._api_send(aim_api.Failed(aim=self.name, error=why))
            status = 1
        except Exception as exc:
            await self._api_send(aim_api.Failed(aim=self.name, error=_describe(exc, "run")))
            status = 1
        else:
            try:
                await self._runtime.end_outputs()
            except Exception as exc:
                await self._api_send(
                    aim_api.Failed(aim=self.name, error=_describe(exc, "closing outputs"))
                )
                status = 1
            else:
                await self._api_send(aim_api.Done(aim=self.name))
        self._finished = True
        self._outcome = "done" if status == 0 else "failed"
        self._say("%s; tearing down", self._outcome)
        await self._teardown()
        return status

    async def _teardown(self) -> None:
        """``AIM.teardown`` once, if its ``setup`` completed (a failed setup cleans up itself)."""
        if self._aim is None or not self._set_up or self._torn_down:
            return
        self._torn_down = True
        try:
            await self._aim.teardown()
        except Exception:
            log.exception("AIM %r: teardown failed", self.name)

    async def _watch_control(self, reader: ChannelReader) -> None:
        """Apply the controller's lifecycle signals even while the AIM computes."""
        assert self._aim is not None
        stream = self._runtime.stream
        while True:
            event = await reader.recv()
            if not isinstance(event, Signal):
                continue
            code = event.code
            if code == SignalCode.SUSPEND and stream.resumed.is_set():
                stream.resumed.clear()
                await self._aim.on_suspend()
                await self._api_send(aim_api.StateChange(aim=self.name, state="suspended"))
            elif code == SignalCode.RESUME and not stream.resumed.is_set():
                await self._aim.on_resume()
                stream.resumed.set()
                await self._api_send(aim_api.StateChange(aim=self.name, state="running"))
            elif code == SignalCode.STOP:
                stream.stopping = True
                stream.resumed.set()
                stream.signal(Signal(code=code, port=None))
                await self._api_send(aim_api.StateChange(aim=self.name, state="stopping"))
            elif code == SignalCode.ABORT:
                if self._run_task is not None:
                    self._run_task.cancel()
            else:
                stream.signal(Signal(code=code, port=None))

    async def _heartbeat(self, interval: float) -> None:
        beat = aim_api.pack(aim_api.Heartbeat(aim=self.name))
        while True:
            await asyncio.sleep(interval)
            assert self._dealer is not None
            await self._dealer.send(beat)

    async def _api_send(self, message: pydantic.BaseModel) -> None:
        assert self._dealer is not None
        await self._dealer.send(aim_api.pack(message))

    async def _expect(self, kind: type[_M], timeout: float = CONTROLLER_TIMEOUT) -> _M | None:
        """Wait for the next controller message; None when told to terminate."""
        assert self._dealer is not None
        while True:
            try:
                frame = await asyncio.wait_for(self._dealer.recv(), timeout)
            except TimeoutError as exc:
                what = "answer" if kind is aim_api.Setup else kind.__name__.lower()
                raise LifecycleError(
                    f"AIM {self.name!r}: no {what} from the controller at "
                    f"{self.controller_endpoint} within {timeout:g} s; is the controller "
                    "running and listening there (aif run --listen), and is the address right?"
                    + self._curve_hint()
                ) from exc
            try:
                message = aim_api.parse_controller_message(frame)
            except AIFError as exc:
                log.warning("AIM %r: ignoring a malformed controller message: %s", self.name, exc)
                continue
            if isinstance(message, aim_api.Terminate):
                refused = kind is aim_api.Setup
                level = logging.ERROR if refused and self.type_text else logging.INFO
                verb = "refused" if refused else "terminated"
                log.log(level, "AIM %r: %s by the controller: %s", self.name, verb, message.reason)
                return None
            if isinstance(message, kind):
                return message
            log.warning(
                "AIM %r: expected %s, got %s; ignored", self.name, kind.__name__, message.op
            )

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._runtime.close()
        if self._control is not None:
            self._control.close()
        if self._monitor is not None and self._dealer is not None:
            self._dealer.disable_monitor()
            self._monitor.close(linger=0)
        if self._dealer is not None:
            reason = self._leaving[0] if self._leaving else self._outcome
            bye = aim_api.pack(aim_api.Bye(aim=self.name, reason=reason))
            with contextlib.suppress(zmq.ZMQError, TimeoutError):
                await asyncio.wait_for(self._dealer.send(bye), 1.0)
            self._dealer.close(linger=1000)
            if self._registered:
                self._say("deregistered (%s)", reason)

    def _curve_hint(self) -> str:
        """What else may keep a secure host from its controller."""
        if self._curve is None:
            if not self._over_tcp:
                return ""
            return (
                " A controller in the secure profile answers only CURVE clients: give its key "
                "with --server-key curve:KEY"
            )
        mine = self._curve[0].public
        return (
            f" Over CURVE: is --server-key the controller's key (`aif controller status` "
            f"there), and does the controller trust this host's key {key_text(mine)} "
            f"(`{trust_command(mine)}` there, then restart it or send it SIGHUP)?"
        )

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


async def serve_host(
    controller: str,
    aim: str,
    workflow: str | None,
    type_text: str | None,
    *,
    watch_parent: bool = False,
    connect_timeout: float = CONTROLLER_TIMEOUT,
    handle_signals: bool = False,
    state_dir: Path | None = None,
    identity: CurvePair | None = None,
    server_key: bytes | None = None,
) -> int:
    """Run one host in a fresh ZeroMQ context (child and remote placements)."""
    ctx = zmq.asyncio.Context()
    try:
        host = AIMHost(
            ctx,
            controller,
            aim,
            workflow=workflow,
            type_text=type_text,
            watch_parent=watch_parent,
            connect_timeout=connect_timeout,
            handle_signals=handle_signals,
            state_dir=state_dir,
            identity=identity,
            server_key=server_key,
        )
        return await host.serve()
    finally:
        Gatekeeper.stop_for(ctx)
        ctx.destroy(linger=0)


def remote_curve(
    controller: str,
    server_key: str | None,
    state_dir: Path | None,
    identity_stdin: bool = False,
) -> tuple[CurvePair | None, bytes | None]:
    """The CURVE identity and server key of a remote host (``aif aim serve``), or Nones.

    CURVE when the controller's key is known: ``--server-key``, else the key trusted
    for that endpoint in this machine's key ring. The host's own pair is read from
    stdin (``identity_stdin``: a peer controller that started it hands on its own),
    else it is this state directory's identity (a passphrase may be asked).
    """
    if not controller.startswith("tcp://"):
        return None, None
    from aif.security.curve import parse_curve_key, trusted_server_key
    from aif.storage.paths import default_state_dir

    state = state_dir or default_state_dir()
    key = (
        parse_curve_key(server_key, "--server-key")
        if server_key
        else trusted_server_key(state, controller)
    )
    if key is None:
        return None, None
    if identity_stdin:
        secret = sys.stdin.readline().strip().encode("ascii", "replace")
        try:
            return CurvePair(zmq.curve_public(secret), secret), key
        except (zmq.ZMQError, ValueError) as exc:
            raise ConfigError(f"--identity-stdin: no CURVE secret key on stdin ({exc})") from exc
    from aif.security.keys import KeyRing

    own = KeyRing(state).identity()
    return CurvePair(own.curve_public, own.curve_secret), key


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m aif.aims`` (the ``process`` placement)."""
    parser = argparse.ArgumentParser(prog="python -m aif.aims")
    parser.add_argument("--controller", required=True, help="AIM API endpoint of the controller")
    parser.add_argument("--aim", required=True, help="name of the AIM in its workflow")
    parser.add_argument("--workflow", default=None, help="workflow instance id")
    parser.add_argument("--type", default=None, help="AIM type this host brings (remote hosts)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s [{args.aim}] %(message)s")
    return asyncio.run(
        serve_host(args.controller, args.aim, args.workflow, args.type, watch_parent=True)
    )


if __name__ == "__main__":
    sys.exit(main())
