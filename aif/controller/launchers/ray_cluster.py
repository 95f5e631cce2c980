"""The Ray cluster as aif sees it: connecting, its live nodes and their resources.

Ray is an optional extra (``pip install 'aif[ray]'``): nothing here imports it until a
``placement: ray`` AIM or ``aif controller start --ray`` needs it, and a missing Ray
is a :class:`~aif.errors.ConfigError` that names the extra. Ray's own calls block
(they ask the cluster's GCS over gRPC), so async callers run them in a thread.

Resources are spelled as a workflow writes them (``num_cpus``, ``num_gpus``,
``memory`` in bytes, ``custom: {imc: 1}``) and as Ray counts them (``CPU``, ``GPU``,
``memory``, ``imc``); :func:`demand` turns the one into the other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aif.errors import ConfigError

#: The Ray namespace aif's actors live in.
NAMESPACE: Final = "aif"
#: How to install Ray for aif.
INSTALL_HINT: Final = "pip install 'aif[ray]'"
#: Ray's resources that are not a queue of their own (totals Ray keeps for itself).
_RAY_OWN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


@dataclass(frozen=True)
class RayNode:
    """A node of the Ray cluster: Ray's node id, its IP address, its host name."""

    id: str
    ip: str
    hostname: str = ""

    @property
    def short(self) -> str:
        """The first 12 hex digits of the id, as messages give it."""
        return self.id[:12]

    def __str__(self) -> str:
        return f"{self.ip} (node {self.short})"

    def to_json(self) -> dict[str, str]:
        """What a job's result keeps of it."""
        return {"node_id": self.id, "ip": self.ip, "hostname": self.hostname}


@dataclass(frozen=True)
class NodeResources:
    """A live node and the totals of its resources, as Ray counts them."""

    node: RayNode
    totals: dict[str, float]


def require_ray() -> Any:
    """The ``ray`` module, or a ``ConfigError`` that says how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"Ray is not installed here, and placement: ray and --ray need it: {INSTALL_HINT} "
            "(the same version on every node of the cluster)"
        ) from exc
    return ray


def connect(address: str | None) -> str:
    """Connect this process to the Ray cluster at ``address`` (once); its GCS address.

    ``None`` or ``auto``: ``$RAY_ADDRESS``, else the cluster started on this machine.
    """
    ray = require_ray()
    if not ray.is_initialized():
        # Connecting from a thread (so an event loop goes on) leaves the process's
        # signals to it, which is what aif wants; Ray warns about that: not here.
        logging.getLogger("ray._private.worker").addFilter(_NoThreadSignalWarning())
        where = address or os.environ.get("RAY_ADDRESS") or "auto"
        try:
            ray.init(
                address=where,
                namespace=NAMESPACE,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at {where!r}: {exc}; start one with "
                "`ray start --head` and give its address as HOST:PORT (--ray, $RAY_ADDRESS)"
            ) from exc
    return str(ray.get_runtime_context().gcs_address)


class _NoThreadSignalWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def disconnect() -> None:
    """Leave the cluster (Ray then ends the actors this process started)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()


def live_nodes() -> list[NodeResources]:
    """The cluster's live nodes and their resource totals (blocks: asks the GCS)."""
    ray = require_ray()
    nodes = []
    for info in ray.nodes():
        if not info.get("Alive"):
            continue
        node = RayNode(
            str(info.get("NodeID", "")),
            str(info.get("NodeManagerAddress", "")),
            str(info.get("NodeManagerHostname", "")),
        )
        totals = {str(k): float(v) for k, v in dict(info.get("Resources") or {}).items()}
        nodes.append(NodeResources(node, totals))
    return nodes


def cluster_totals(nodes: list[NodeResources]) -> dict[str, float]:
    """The resources of ``nodes`` summed, without Ray's per-node markers (``node:IP``)."""
    totals: dict[str, float] = {}
    for entry in nodes:
        for name, amount in entry.totals.items():
            if ":" not in name:
                totals[name] = totals.get(name, 0.0) + amount
    return totals


def custom_names(totals: Mapping[str, float]) -> list[str]:
    """The custom resources among ``totals`` (``imc``), not Ray's own (``CPU``, ``memory``)."""
    return sorted(n for n in totals if n not in _RAY_OWN and ":" not in n)


def demand(resources: Mapping[str, Any] | None) -> dict[str, float]:
    """What an AIM asks of its node, as Ray counts it (one CPU unless it says)."""
    asked = dict(resources or {})
    wanted: dict[str, float] = {"CPU": float(asked.get("num_cpus") or 1.0)}
    if asked.get("num_cpus") == 0:
        wanted.pop("CPU")
    if asked.get("num_gpus"):
        wanted["GPU"] = float(asked["num_gpus"])
    if asked.get("memory"):
        wanted["memory"] = float(asked["memory"])
    for name, amount in dict(asked.get("custom") or {}).items():
        wanted[str(name)] = float(amount)
    return wanted


def actor_options(resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """Ray's ``.options(...)`` for an actor that asks ``resources``."""
    wanted = demand(resources)
    options: dict[str, Any] = {
        "num_cpus": wanted.pop("CPU", 0.0),
        "num_gpus": wanted.pop("GPU", 0.0),
    }
    if "memory" in wanted:
        options["memory"] = int(wanted.pop("memory"))
    if wanted:
        options["resources"] = wanted
    return options


def unplaceable(wanted: Mapping[str, float], nodes: list[NodeResources]) -> str | None:
    """Why no live node can ever hold ``wanted`` (None: one can, maybe once others end)."""
    if any(all(n.totals.get(k, 0.0) >= v for k, v in wanted.items()) for n in nodes):
        return None
    asked = ", ".join(f"{k}: {v:g}" for k, v in sorted(wanted.items()))
    if not nodes:
        return f"the Ray cluster has no live node (it asks {{{asked}}})"
    have = "; ".join(
        f"{n.node}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(n.totals.items()) if k in wanted)
        for n in nodes
    )
    return f"no live node of the Ray cluster has {{{asked}}} (they have: {have})"
