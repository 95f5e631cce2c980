"""One job per RPU configuration and seed: the validator's fan-out, and its inverse.

``training: {seeds: [0, 1, 2]}`` runs the experiment once per seed, each a job of its
own labelled ``seed-<n>`` (``<sweep label>.seed-<n>`` in a sweep, one job per label and
seed), whose spec has ``training.seed`` set to that seed and no ``seeds``. The reporter
groups the results back with :func:`seed_group` to give mean and std across seeds.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from aif.aims.analog.spec import Experiment

_SEEDED = re.compile(r"^(?P<name>[^\[]*)\[(?:(?P<label>.*)\.)?seed-(?P<seed>\d+)\](?P<at>@.*)?$")


def seed_label(label: str, seed: int) -> str:
    """``seed-1``, or ``reram.seed-1`` for sweep label ``reram``."""
    return f"{label}.seed-{seed}" if label else f"seed-{seed}"


def job_specs(experiment: Experiment) -> dict[str, tuple[str, Experiment]]:
    """Job label -> (its configuration's label, the one-configuration, one-seed spec)."""
    jobs: dict[str, tuple[str, Experiment]] = {}
    for label in experiment.configurations():
        job = experiment.job(label)
        seeds = experiment.training.seeds
        if seeds is None:
            jobs[label] = (label, job)
            continue
        for seed in seeds:
            training = job.training.model_copy(update={"seed": seed, "seeds": None})
            jobs[seed_label(label, seed)] = (label, job.model_copy(update={"training": training}))
    return jobs


def seed_group(job: str) -> tuple[str, int | None]:
    """``hwa[reram.seed-1]`` -> ``("hwa[reram]", 1)``; a job without a seed -> ``(job, None)``.

    A deployed job keeps its target: ``hwa[seed-2]@chip`` -> ``("hwa@chip", 2)``.
    """
    match = _SEEDED.match(job)
    if match is None:
        return job, None
    label = f"[{match['label']}]" if match["label"] else ""
    return f"{match['name']}{label}{match['at'] or ''}", int(match["seed"])


def seed_statistics(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and std across seeds, per group of seeded jobs (see :func:`seed_group`).

    Per group: ``seeds``, ``metric``, ``accuracy_mean`` / ``accuracy_std`` of the final
    test metric, and for each drift point ``drift_mean`` / ``drift_std`` (and the
    ``_compensated`` pair): the mean and std across seeds of each seed's mean. Only
    completed jobs count; a group's drift lists are empty unless every seed has them.
    """
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for result in results:
        group, seed = seed_group(str(result.get("job", "")))
        if seed is not None and result.get("status") == "completed":
            groups.setdefault(group, []).append((seed, result))
    out: dict[str, dict[str, Any]] = {}
    for group, members in sorted(groups.items()):
        members.sort(key=lambda m: m[0])
        rows = [r for _, r in members]
        stats: dict[str, Any] = {
            "seeds": [seed for seed, _ in members],
            "jobs": [r["job"] for r in rows],
            "metric": rows[0].get("metric", "accuracy"),
        }
        stats["accuracy_mean"], stats["accuracy_std"] = _mean_std(
            [[_number(r.get("accuracy"))] for r in rows]
        )
        stats["drift_times"] = list(rows[0].get("drift_times") or [])
        for key in ("drift_mean", "drift_mean_compensated"):
            suffix = key.removeprefix("drift_mean")
            means, stds = _mean_std([[_number(v) for v in r.get(key) or []] for r in rows])
            stats[f"drift_mean{suffix}"], stats[f"drift_std{suffix}"] = means, stds
        for name in ("accuracy_mean", "accuracy_std"):
            stats[name] = stats[name][0] if stats[name] else math.nan
        out[group] = stats
    return out


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _mean_std(columns: list[list[float]]) -> tuple[list[float], list[float]]:
    """Element-wise mean and population std of equally long lists (empty if they differ)."""
    lengths = {len(c) for c in columns}
    if len(lengths) != 1 or not columns[0]:
        return [], []
    table = np.array(columns, dtype=np.float64)
    return table.mean(axis=0).tolist(), table.std(axis=0).tolist()
