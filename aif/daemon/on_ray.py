"""The daemon on a Ray cluster (``aif controller start --ray ADDRESS``).

The daemon connects to the cluster and takes instances from its resources, one
instance per kind, as many slots as the cluster's live nodes have units of it:

* ``ray-cpu`` (queue ``cpu``): one slot per CPU;
* ``ray-cuda`` (queue ``cuda``): one slot per GPU;
* ``ray-NAME`` (queue ``NAME``): one slot per unit of a node's custom resource ``NAME``
  (``ray start --resources '{"imc": 1}'``), so a job of the ``imc`` queue (the IMC chip
  AIM) runs where the board is.

The slots follow the cluster: :func:`ray_instances` is read again every
:data:`REFRESH_INTERVAL` seconds, so a node that joins adds slots and a node that is
lost takes its own away. Ray, not the daemon, picks the node: a job on a Ray instance
runs its heavy AIM as a Ray actor (``placement: ray``, :func:`place_on_ray`) that asks
for one unit of the instance's resource, spread over the nodes that have it free. An
AIM the workflow already places on Ray keeps the resources it asks for (a custom
``imc`` lands on the node that has it). Everything else of the job (sources,
validators, reporters) stays with the daemon, on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from typing import Any, Final

from aif.communication.addresses import DEFAULT_LISTEN, facing_interface
from aif.controller.launchers import ray_cluster
from aif.controller.launchers.ray_cluster import NodeResources, cluster_totals, custom_names
from aif.daemon.scheduler import QUEUE_RANK, Instance, Scheduler
from aif.workflow import ResolvedWorkflow
from aif.workflow.model import RayResources

#: Names of the daemon's instances on the Ray cluster begin so.
PREFIX: Final = "ray-"
#: Seconds between two readings of the cluster's nodes and resources.
REFRESH_INTERVAL: Final = 5.0
_QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")

log = logging.getLogger("aif.daemon")


class RayInstances:
    """The daemon's link to its Ray cluster: connected once, read again and again."""

    def __init__(self, address: str) -> None:
        #: The cluster's GCS address, as Ray gives it once connected.
        self.address = address
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def connect(cls, address: str) -> RayInstances:
        """Connect this process to the cluster (``auto``: ``$RAY_ADDRESS`` or this
        machine's); blocks, so the daemon does it before it serves."""
        gcs = ray_cluster.connect(None if address == "auto" else address)
        log.info("connected to the Ray cluster at %s", gcs)
        return cls(gcs)

    def listen(self, listen: str) -> str:
        """Where the AIM API listens so that hosts on every node can dial it: as given,
        or (the loopback default) the interface of this machine that faces the cluster."""
        if listen != DEFAULT_LISTEN:
            return listen
        return f"tcp://{facing_interface('tcp://' + self.address)}:*"

    async def instances(self) -> list[Instance]:
        """The instances the cluster's live nodes make now."""
        nodes = await asyncio.to_thread(ray_cluster.live_nodes)
        return ray_instances(nodes, self.address)

    def follow(self, scheduler: Scheduler) -> None:
        """Keep ``scheduler``'s Ray instances as the cluster is, every few seconds."""
        self._task = asyncio.create_task(self._follow(scheduler), name="ray-instances")

    async def _follow(self, scheduler: Scheduler) -> None:
        seen: list[str] = []
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            try:
                instances = await self.instances()
            except Exception as exc:  # the GCS did not answer: keep the slots we have
                log.warning("Ray cluster not read: %s", exc)
                continue
            scheduler.resize(instances)
            nodes = sorted(n["node_id"][:12] for n in instances[0].capabilities["nodes"])
            if nodes != seen:
                log.info("Ray cluster: %d live node(s) %s", len(nodes), ", ".join(nodes))
                seen = nodes

    async def close(self) -> None:
        """Stop following and leave the cluster (Ray ends the actors left)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(ray_cluster.disconnect)


def ray_instances(nodes: list[NodeResources], address: str) -> list[Instance]:
    """The daemon's instances on the cluster whose live nodes are ``nodes``."""
    totals = cluster_totals(nodes)
    listing = [
        {
            "node_id": entry.node.id,
            "ip": entry.node.ip,
            "resources": {k: v for k, v in sorted(entry.totals.items()) if ":" not in k},
        }
        for entry in nodes
    ]

    def instance(queue: str, resource: str) -> Instance:
        caps: dict[str, Any] = {
            "ray": address,
            "resource": resource,
            "total": totals.get(resource, 0.0),
            "nodes": listing,
        }
        if queue in ("cpu", "cuda"):
            caps["device"] = queue
        return Instance(f"{PREFIX}{queue}", queue, max(0, int(totals.get(resource, 0.0))), caps)

    instances = [instance("cpu", "CPU")]
    if totals.get("GPU", 0.0) >= 1:
        instances.append(instance("cuda", "GPU"))
    for name in custom_names(totals):
        if _QUEUE_NAME.match(name) and name not in ("cpu", "cuda", "validation"):
            instances.append(instance(name, name))
    return instances


def on_ray(instance: Instance) -> bool:
    """Whether ``instance`` is one of the daemon's Ray instances."""
    return instance.name.startswith(PREFIX) and "ray" in instance.capabilities


def queue_resources(queue: str) -> RayResources:
    """What the heavy AIM of a job in ``queue`` asks of a Ray node."""
    if queue == "cpu":
        return RayResources(num_cpus=1)
    if queue == "cuda":
        return RayResources(num_cpus=1, num_gpus=1)
    return RayResources(num_cpus=1, custom={queue: 1})


def place_on_ray(resolved: ResolvedWorkflow, instance: Instance) -> ResolvedWorkflow:
    """The job with its heavy AIM placed on Ray, when it runs on a Ray instance.

    An AIM the workflow places on Ray itself keeps its resources, and nothing else
    moves; a secure job runs on this machine (its storage keys go to no Ray host).
    Otherwise the heaviest ``process`` AIM (the one whose queue ranks highest; among
    equals, one the workflow placed ``process`` itself) runs as a Ray actor that asks
    for one unit of the instance's resource.
    """
    if not on_ray(instance) or resolved.workflow.profile == "secure":
        return resolved  # a secure job's keys never go to a host Ray starts
    aims = resolved.workflow.aims
    if any(decl.placement == "ray" for decl in aims.values()):
        return resolved
    heavy = [name for name, decl in aims.items() if decl.placement == "process"]
    if not heavy:
        return resolved

    def weight(name: str) -> tuple[int, bool]:
        aim = resolved.aims[name]
        queues = aim.cls.resources(aim.params)
        rank = QUEUE_RANK.get(queues[0], QUEUE_RANK["imc"]) if queues else -1
        return rank, "placement" in aim.decl.model_fields_set

    chosen = max(heavy, key=weight)
    decl = aims[chosen].model_copy(
        update={"placement": "ray", "resources": queue_resources(instance.queue)}
    )
    workflow = resolved.workflow.model_copy(update={"aims": {**aims, chosen: decl}})
    moved = dataclasses.replace(resolved.aims[chosen], decl=decl)
    return dataclasses.replace(resolved, workflow=workflow, aims={**resolved.aims, chosen: moved})
