"""Wiring a run: transports, the ``Setup`` and ``Wire`` messages, the controller's own ends.

The controller decides the order of bring-up; this module holds what it computes on
the way, as plain functions of the ``RunPlan`` and the AIMs' ``Ready`` endpoints, so
the controller reads as a sequence of steps and the wiring rules can be read (and
changed) in one place. Each channel's transport follows from where its two ends
live: ``inproc`` inside the controller's process, ``ipc`` on this machine, ``tcp``
when a remote host or a Ray actor (maybe on another node) is involved. The controller
itself is an end for the AIW's declared inputs (feeders) and outputs (collectors) and
for each AIM's control lane.

A secure run has one CURVE key pair (``new_channel_keys``), handed to every AIM in
its ``Setup``; every ``tcp`` channel of the run, the controller's own ends included,
serves and dials with it, so only the run's AIMs can reach the run's channels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import zmq.asyncio

from aif.api import aim as aim_api
from aif.communication.channel import ChannelEndpoints, ChannelReader, ChannelWriter, Transport
from aif.communication.limits import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_QUEUE_SIZE
from aif.communication.ports import EndOfStream, Record
from aif.controller.plan import RunPlan
from aif.controller.run import AIMHandle, WorkflowRun
from aif.errors import AIFError
from aif.security.curve import CurveKeys, CurvePair, run_domain


def choose_transport(*placements: str) -> Transport:
    """The transport of a channel whose ends live at ``placements``."""
    if "remote" in placements or "ray" in placements:
        return "tcp"
    if all(p in ("inproc", "controller") for p in placements):
        return "inproc"
    return "ipc"


def new_channel_keys(run_id: str) -> aim_api.ChannelKeys:
    """A fresh key pair for one secure run's tcp channels, in the run's own ZAP domain."""
    pair = CurvePair.generate()
    return aim_api.ChannelKeys(
        public=pair.public.decode("ascii"),
        secret=pair.secret.decode("ascii"),
        domain=run_domain(run_id),
    )


def setup_message(
    plan: RunPlan,
    name: str,
    run_id: str,
    *,
    state_dir: Path,
    ipc_dir: Path,
    heartbeat_interval: float,
    tcp_host: str = "127.0.0.1",
    channel_keys: aim_api.ChannelKeys | None = None,
    storage: aim_api.StorageGrant | None = None,
) -> aim_api.Setup:
    """What the host of AIM ``name`` needs to instantiate it and bind its inputs."""
    aim = plan.aims[name]
    transports = {
        port: choose_transport(aim.placement, *plan.writer_placements(name, port))
        for port in aim.input_ports
    }
    return aim_api.Setup(
        type=aim.type,
        params=aim.params,
        workflow=run_id,
        state_dir=str(state_dir),
        ipc_dir=str(ipc_dir),
        transports=transports,
        control_transport=choose_transport("controller", aim.placement),
        queue_sizes=plan.queue_sizes(name),
        max_message_sizes=plan.max_message_sizes(name),
        heartbeat_interval=heartbeat_interval,
        base_dir=plan.base_dir,
        work_dir=plan.work_dir,
        tcp_host=tcp_host,
        channel_keys=channel_keys,
        storage=storage,
    )


def wire_message(
    run: WorkflowRun, plan: RunPlan, name: str, collectors: dict[str, ChannelReader]
) -> aim_api.Wire:
    """Where each output port of AIM ``name`` sends, once every AIM of ``run`` is ready."""
    outputs: dict[str, list[aim_api.Target]] = {}
    for conn in plan.connections:
        if conn.source_aim != name:
            continue
        ready = run.handles[conn.target_aim].ready
        assert ready is not None
        outputs.setdefault(conn.source_port, []).append(
            aim_api.Target(
                endpoints=ready.inputs[conn.target_port],
                target=f"{conn.target_aim}.{conn.target_port}",
                queue_size=conn.queue_size,
                max_message_size=conn.max_message_size,
                capabilities=ready.capabilities,
            )
        )
    for ref, reader in collectors.items():
        aim, port = ref.split(".", 1)
        if aim == name:
            ep = reader.endpoints
            outputs.setdefault(port, []).append(
                aim_api.Target(
                    endpoints=aim_api.Endpoints(normal=ep.normal, high=ep.high),
                    target=f"controller:{ref}",
                    queue_size=DEFAULT_QUEUE_SIZE,
                    max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
                )
            )
    return aim_api.Wire(outputs=outputs, writers=plan.writers_per_input(name))


def open_collectors(
    ctx: zmq.asyncio.Context,
    ipc_dir: Path,
    run: WorkflowRun,
    plan: RunPlan,
    tcp_host: str = "127.0.0.1",
    curve: CurveKeys | None = None,
) -> dict[str, ChannelReader]:
    """Readers in the controller for the AIW's declared outputs (``tcp_host``: see Setup;
    ``curve``: a secure run's channel keys)."""
    collectors: dict[str, ChannelReader] = {}
    for ref in plan.outputs:
        aim = ref.split(".", 1)[0]
        reader = ChannelReader(
            ctx,
            ref,
            choose_transport("controller", plan.aims[aim].placement),
            ipc_dir=ipc_dir,
            tcp_host=tcp_host,
            curve=curve,
        )
        collectors[ref] = reader
        run.outputs[ref] = []
    return collectors


def open_feeders(
    ctx: zmq.asyncio.Context, run: WorkflowRun, plan: RunPlan, curve: CurveKeys | None = None
) -> dict[str, tuple[ChannelWriter, list[Any]]]:
    """Writers from the controller into the AIM ports the AIW's ``inputs`` feed."""
    feeders = {}
    for ref, records in plan.inputs.items():
        aim, port = ref.split(".", 1)
        ready = run.handles[aim].ready
        assert ready is not None
        ep = ready.inputs[port]
        writer = ChannelWriter(
            ctx,
            ref,
            ChannelEndpoints(normal=ep.normal, high=ep.high),
            record_type=plan.aims[aim].port_types[port],
            curve=curve,
        )
        feeders[ref] = (writer, records)
    return feeders


def open_control(
    ctx: zmq.asyncio.Context, handle: AIMHandle, curve: CurveKeys | None = None
) -> ChannelWriter:
    """The controller's writer into the control reader the AIM said it is ready on."""
    assert handle.ready is not None
    ctrl = handle.ready.control
    return ChannelWriter(
        ctx,
        "control",
        ChannelEndpoints(normal=ctrl.normal, high=ctrl.high),
        queue_size=16,
        curve=curve,
    )


async def feed(
    run: WorkflowRun,
    ref: str,
    writer: ChannelWriter,
    records: list[Any],
    fail: Callable[[WorkflowRun, str | None, str], Awaitable[None]],
) -> None:
    """Send the AIW input ``ref``'s records and its end-of-stream; fail the run on error."""
    try:
        for record in records:
            await writer.send(record)
        await writer.send_eos()
    except AIFError as exc:
        await fail(run, None, f"feeding input {ref}: {exc}")
    finally:
        writer.close()


async def collect(ref: str, reader: ChannelReader, run: WorkflowRun) -> None:
    """Append every record of the AIW output ``ref`` to the run's outputs until its end."""
    try:
        while True:
            event = await reader.recv()
            if isinstance(event, EndOfStream):
                return
            if isinstance(event, Record):
                run.outputs[ref].append(event.value)
    finally:
        reader.close()
