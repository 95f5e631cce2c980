"""Which launcher an AIM's placement gets."""

from __future__ import annotations

import zmq.asyncio

from aif.controller.launchers.hand_started import RemoteLauncher
from aif.controller.launchers.local import InprocLauncher, ProcessLauncher
from aif.controller.launchers.protocol import Launcher
from aif.controller.launchers.warm import WarmLauncher, WorkerPool
from aif.controller.plan import PlannedAIM
from aif.security.curve import ControllerCurve


def launcher_for(
    aim: PlannedAIM,
    ctx: zmq.asyncio.Context,
    endpoints: dict[str, str],
    workflow: str,
    curve: ControllerCurve | None = None,
    pool: WorkerPool | None = None,
    *,
    ray_address: str | None = None,
    work_dir: str = "",
) -> Launcher:
    """The launcher for an AIM's placement, given the controller's AIM API endpoints.

    ``curve``: the controller's secure profile, with which it asks peers to host AIMs.
    ``pool``: warm workers (the daemon's) for ``process`` AIMs whose type opts in.
    ``ray_address``: the Ray cluster of ``ray`` AIMs (None: the one connected, else
    ``$RAY_ADDRESS`` or this machine's); ``work_dir``: the run's folder for results.
    """
    if aim.placement == "inproc":
        return InprocLauncher(ctx, endpoints["inproc"], aim.name, workflow)
    if aim.placement == "process":
        if pool is not None and aim.warm_modules is not None:
            return WarmLauncher(pool, endpoints["ipc"], aim.name, workflow, aim.warm_modules)
        return ProcessLauncher(endpoints["ipc"], aim.name, workflow)
    if aim.placement == "ray":
        from aif.controller.launchers.ray import RayLauncher  # imports Ray only when launched

        tcp = endpoints.get("tcp")
        return RayLauncher(
            aim, tcp, workflow, address=ray_address, work_dir=work_dir, curve=curve is not None
        )
    if aim.peers:
        from aif.controller.launchers.peer import (
            PeerLauncher,  # only AIMs with peers: pay for it then
        )

        return PeerLauncher(ctx, aim, endpoints.get("tcp"), workflow, curve)
    return RemoteLauncher()
