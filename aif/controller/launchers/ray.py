"""The Ray launcher: an AIM's host as a Ray actor on whichever node has its resources.

``placement: ray`` (with ``resources: {num_cpus, num_gpus, memory, custom}``), or a
heavy AIM of a job on a daemon started with ``--ray``::

    controller (its machine)                          a node of the Ray cluster
      RayLauncher ── actor {CPU, GPU, memory, imc} ──►  Ray places a HostActor there
                  ◄─ {node id, IP, pid} once it runs ──   its child: python -m aif.host
      AIM API ◄──── hello, ready, heartbeats, bye ──────    --controller tcp://C:PORT
      its AIMs ◄═══════ records, AIM to AIM over tcp ═════► the AIM
                  ── actor.wait() ──────────────────────►  raises when Ray loses the
                                                            actor or its node
                  ── actor.stop(grace), ray.kill ───────►  when the run ends

Ray only decides *where* the host runs and keeps it alive there; the host is the
``process`` placement's own child, so it registers, is wired and is supervised like
any remote host (heartbeats, its ``bye``), channels are aif's ZeroMQ channels over tcp,
and the Controller stays the MPAI-AIF Controller. What Ray adds is the node: the
launcher says which one in every message (``RayNode``), and when Ray loses the actor
(its node died, its raylet was killed, its process crashed) the AIM fails naming it,
so the daemon's retry asks Ray again, which places it on the nodes left.

Before it asks, the launcher checks that some live node has the resources at all: an
AIM that asks for ``{imc: 1}`` on a cluster without an ``imc`` node fails at once,
naming what each node has, rather than waiting for Ray forever. While Ray waits for
resources that are busy, the launcher waits too, checking that they still exist
(a node that leaves may take the only one with them), for at most
:data:`PLACE_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from typing import Any, Final

from aif.communication.addresses import WILDCARD_HOSTS, facing_interface, tcp_host
from aif.controller.launchers import ray_cluster
from aif.controller.launchers.hand_started import RemoteLauncher
from aif.controller.launchers.protocol import describe_exit
from aif.controller.launchers.ray_cluster import RayNode
from aif.controller.plan import PlannedAIM
from aif.errors import AIFError

__all__ = ["PLACE_TIMEOUT", "RayLauncher"]

log = logging.getLogger("aif.ray")

#: Seconds the launcher waits for Ray to place the actor (its resources busy elsewhere).
PLACE_TIMEOUT: Final = 600.0
#: Seconds between the checks, while Ray waits, that the resources still exist.
PLACE_CHECK: Final = 2.0
#: Seconds a host is given to end on ``stop`` before it is killed.
STOP_GRACE: Final = 2.0
#: Environment the host's child gets from the controller's (its log settings, and the
#: Python path its AIM classes may come from); nothing else of the controller's goes.
PASSED_ENV: Final = ("AIF_LOG_LEVEL", "AIF_LOG_TIMES", "PYTHONPATH")


class RayLauncher(RemoteLauncher):
    """A ``placement: ray`` AIM: Ray starts its host as an actor on a node it chooses.

    To supervision it is a remote host (registration, heartbeats, its ``bye``); it adds
    asking Ray for the actor, watching the actor (Ray losing it ends the launcher with
    the node named), and ending the actor when the run ends. One per run attempt.
    """

    def __init__(
        self,
        aim: PlannedAIM,
        aim_api_tcp: str | None,
        workflow: str,
        *,
        address: str | None = None,
        work_dir: str = "",
        curve: bool = False,
    ) -> None:
        """``address``: the Ray cluster (None: the one this process is connected to, else
        ``$RAY_ADDRESS`` or this machine's); ``work_dir``: where the host writes results
        when that folder exists on its node; ``curve``: the AIM API is CURVE (secure)."""
        super().__init__()
        self._curve = curve
        self._aim = aim
        self._tcp = aim_api_tcp
        self._workflow = workflow
        self._address = address
        #: The AIM API address hosts dial: the one it listens on, or (a wildcard) the
        #: interface that faces the cluster.
        self._dial = aim_api_tcp or ""
        self._work_dir = work_dir or os.getcwd()
        self._actor: Any = None
        self._watch_task: asyncio.Task[None] | None = None
        #: The node Ray placed the host on, once it runs there.
        self.node: RayNode | None = None
        #: The host's pid on that node.
        self.host_pid: int | None = None
        self.description = "Ray actor (not placed yet)"

    async def launch(self) -> None:
        """Ask Ray for the actor and start the host in it; never raises (``ended`` says why)."""
        if self._tcp is None:
            self.ended(
                1,
                f"AIM {self._aim.name!r} runs on a Ray node, whose host dials this controller "
                "back over tcp, but this controller does not listen on tcp: "
                "`aif run --listen tcp://HOST:*`, or start the daemon with --ray",
            )
            return
        if self._curve:
            self.ended(
                1,
                f"AIM {self._aim.name!r} is placed on Ray, but this controller's AIM API is "
                "CURVE (secure profile), which a host Ray starts cannot join; run it with "
                "placement: process or remote, or the controller without the secure profile",
            )
            return
        try:
            gcs = await asyncio.to_thread(ray_cluster.connect, self._address)
            self._dial = _dialable(self._tcp, gcs)
            wanted = ray_cluster.demand(self._aim.resources)
            missing = ray_cluster.unplaceable(wanted, await _live_nodes())
            if missing is not None:
                self.ended(1, missing)
                return
            self._actor = _new_actor(self._aim)
            info = await self._placed(self._actor.start.remote(*self._start_args()), wanted)
        except AIFError as exc:
            self.ended(1, str(exc))
            await self._kill()
            return
        except Exception as exc:  # Ray's own errors: the run fails saying so
            self.ended(1, f"Ray could not start its actor: {_first_line(exc)}")
            await self._kill()
            return
        if info is None:
            await self._kill()
            return
        self.node = RayNode(str(info["node_id"]), str(info["ip"]), str(info.get("hostname", "")))
        self.host_pid = int(info["pid"])
        self._describe()
        unreachable = _unreachable(self._dial, self.node)
        if unreachable is not None:
            self.ended(1, unreachable)
            await self._kill()
            return
        log.info("AIM %r of run %s: %s", self._aim.name, self._workflow, self.description)
        waiting = self._actor.wait.remote()
        self._watch_task = asyncio.create_task(self._watch(waiting), name=f"ray-{self._aim.name}")

    def registered(self, machine: str | None, pid: int) -> None:
        # The host may say hello before Ray's answer to ``start`` is back here.
        self.host_pid = pid
        self._describe()

    def _describe(self) -> None:
        """Name the node (and the host's pid) in every later message."""
        pid = f", pid {self.host_pid}" if self.host_pid is not None else ""
        if self.node is None:
            self.description = f"Ray actor (node not known yet{pid})"
        else:
            self.description = f"Ray actor on node {self.node.ip} (node {self.node.short}{pid})"

    def ended(self, status: int, reason: str = "") -> None:
        super().ended(status, reason)
        task = self._watch_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def terminate(self, grace: float) -> None:
        """Wait up to ``grace`` for the host's goodbye, then stop the host and the actor."""
        await super().terminate(grace)
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        if self._actor is not None:
            with contextlib.suppress(Exception):  # Ray may have lost it: nothing to stop
                await asyncio.wait_for(_awaited(self._actor.stop.remote(STOP_GRACE)), 10.0)
        await self._kill()

    def _start_args(self) -> tuple[list[str], dict[str, str], str]:
        """What the actor's ``start`` gets: plain strings only."""
        argv = ["--controller", self._dial, "--aim", self._aim.name, "--workflow", self._workflow]
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        env["PYTHONUNBUFFERED"] = "1"
        return argv, env, self._work_dir

    async def _placed(self, start: Any, wanted: dict[str, float]) -> dict[str, Any] | None:
        """Wait for Ray to place the actor and start the host; its answer, or None (ended)."""
        future = asyncio.ensure_future(_awaited(start))
        deadline = time.monotonic() + PLACE_TIMEOUT
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=PLACE_CHECK)
                if done:
                    info = future.result()
                    if not isinstance(info, dict) or "node_id" not in info or "pid" not in info:
                        raise AIFError(f"the Ray actor answered {info!r:.200} to start")
                    return info
                missing = ray_cluster.unplaceable(wanted, await _live_nodes())
                if missing is None and time.monotonic() < deadline:
                    continue
                break
        finally:
            future.cancel()  # given up on, or the launch was cancelled: the actor is killed
        self.ended(
            1,
            missing
            or f"Ray did not place it within {PLACE_TIMEOUT:g} s (the resources it asks, "
            f"{wanted}, stayed busy)",
        )
        return None

    async def _watch(self, waiting: Any) -> None:
        """End the launcher when the host ends, or when Ray loses the actor or its node."""
        try:
            status = await _awaited(waiting)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Ray lost the actor: its node died, or its process did
            alive = await _node_alive(self.node)
            how = "Ray counts its node dead" if alive is False else "Ray lost it or its node"
            reason = f"{how}: {_first_line(exc)}"
            log.error("AIM %r of run %s: %s", self._aim.name, self._workflow, reason)
            self.ended(1, reason)
            return
        self.ended(int(status), f"its host ended ({describe_exit(int(status))})")

    async def _kill(self) -> None:
        """End the actor (its host child dies with it); Ray may have lost it already."""
        actor, self._actor = self._actor, None
        if actor is None:
            return
        ray = ray_cluster.require_ray()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(ray.kill, actor, no_restart=True)


@functools.cache
def _actor_class() -> Any:
    """``HostActor`` as a Ray actor class, made once (Ray exports it once to the cluster)."""
    from aif.host.ray_actor import HostActor  # the class only: Ray imports it on the node

    return ray_cluster.require_ray().remote(HostActor)


def _new_actor(aim: PlannedAIM) -> Any:
    """A fresh ``HostActor`` that asks for the AIM's resources, spread over the nodes."""
    options = ray_cluster.actor_options(aim.resources)
    return (
        _actor_class()
        .options(
            **options,
            max_concurrency=4,  # stop() while wait() blocks
            max_restarts=0,  # a lost host fails its run; the daemon's retry asks again
            scheduling_strategy="SPREAD",
            name=None,
        )
        .remote()
    )


async def _awaited(ref: Any) -> Any:
    """The value of a Ray object reference, awaited in this loop."""
    return await ref


async def _live_nodes() -> list[ray_cluster.NodeResources]:
    return await asyncio.to_thread(ray_cluster.live_nodes)


async def _node_alive(node: RayNode | None) -> bool | None:
    """Whether Ray still counts ``node`` as alive (None: it cannot say now)."""
    if node is None:
        return None
    try:
        nodes = await asyncio.wait_for(_live_nodes(), 5.0)
    except Exception:
        return None
    return any(entry.node.id == node.id for entry in nodes)


def _dialable(endpoint: str, gcs: str) -> str:
    """``endpoint`` as hosts on the cluster's nodes dial it (a wildcard: the interface
    of this machine that faces the cluster's GCS at ``gcs``, HOST:PORT)."""
    host, port = tcp_host(endpoint), endpoint.rpartition(":")[2]
    if host not in WILDCARD_HOSTS:
        return endpoint
    return f"tcp://{facing_interface('tcp://' + gcs)}:{port}"


def _unreachable(endpoint: str, node: RayNode) -> str | None:
    """Why a host on ``node`` cannot dial ``endpoint`` (a loopback address of this machine,
    and the node is another machine); None when it can, as far as can be told."""
    host = tcp_host(endpoint)
    if not (host.startswith("127.") or host in ("localhost", "::1", "[::1]")):
        return None
    try:
        if facing_interface(f"tcp://{node.ip}:9") == node.ip:
            return None  # the node's address is one of this machine's
    except AIFError:
        pass
    return (
        f"Ray placed it on node {node}, another machine, but this controller listens for "
        f"hosts on {endpoint}, a loopback address that machine cannot dial; listen on an "
        "address of this machine the cluster reaches (--listen tcp://IP:*)"
    )


def _first_line(exc: BaseException) -> str:
    """``ActorDiedError: ...``: the error's name and the start of its first line."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(exc).__name__}: {first[:160]}"
