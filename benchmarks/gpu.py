"""aif's analog training on a GPU against the same on the CPU: ``cuda_speedup``.

Run: ``python -m benchmarks.gpu [--devices cuda,cpu] [--quick] [--budget SECONDS]``
(``benchmarks/gpu.sh`` runs it on a GPU machine after setting it up).

Two workloads, each one ``aif run`` per device of a workflow shaped like
``workflows/hwa-training.yaml`` (experiment source, validator, simulator in its own
process, reporter without plots); the same experiments on every device:

* ``sweep``, the device sweep: the small experiments of ``benchmarks/sweep.py``
  (analog MLP 64-32-10 on scikit-learn's digits, batches of 16, two epochs, each its
  own learning rate and seed), all in one run. Timed: the simulator's own epoch seconds
  (``metrics.csv``), their mean over every job.
* ``resnet``: the CIFAR ResNet of ``benchmarks/resnet.py`` (ResNet-20, hardware-aware
  training on generated 3x32x32 images with its noise, crop and flip). Timed: the
  simulator's epoch seconds; the first epoch (warm-up: allocations, cuDNN's choices)
  is reported but the steady figure is the median of the others.

Both devices run the same RPU config family: ``InferenceRPUConfig`` (aihwkit's C++
RPUCuda tiles) where aihwkit was built with CUDA or no GPU is asked for, else
``TorchInferenceRPUConfig``, whose tiles are plain torch and run on any GPU torch sees
(``--family`` to choose). ``cuda_speedup`` is the ResNet's steady CPU epoch time over
its CUDA one (``sweep_cuda_speedup`` the same for the sweep); above 1, the GPU is faster.

Each run gets a share of ``--budget`` (the budget left over the runs left); one that
passes it is stopped, and the epochs it finished still count (``timed_out``). The last
line printed is one JSON object: ``cuda_speedup``, ``sweep_cuda_speedup``, the family,
the GPU, torch and aihwkit, and per workload and device the epoch times, images per
second and accuracy. Progress goes to stderr with the seconds since the start.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.machine import describe, rounded

ROOT = Path(__file__).resolve().parent.parent
STARTED = time.perf_counter()
#: Sizes: sweep experiments; ResNet depth, training and test images, batch, epochs.
FULL = {"experiments": 6, "depth": 20, "train": 2048, "test": 512, "batch_size": 128, "epochs": 3}
QUICK = {"experiments": 2, "depth": 20, "train": 128, "test": 64, "batch_size": 64, "epochs": 2}


def say(message: str) -> None:
    print(f"[gpu.py {time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def probe() -> dict[str, Any]:
    """torch, its GPU, and whether aihwkit was compiled with CUDA."""
    import aihwkit
    import torch
    from aihwkit.simulator.rpu_base import cuda

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "gpu": gpu,
        "aihwkit": aihwkit.__version__,
        "aihwkit_cuda": bool(cuda.is_compiled()),
    }


def family_for(devices: list[str], found: dict[str, Any], asked: str | None) -> str:
    if asked:
        return asked
    if "cuda" not in devices or found["aihwkit_cuda"]:
        return "InferenceRPUConfig"
    return "TorchInferenceRPUConfig"


# --------------------------------------------------------------------------- workloads


def sweep_experiments(n: int, family: str, device: str) -> list[dict[str, Any]]:
    from benchmarks.sweep import experiment

    found = []
    for i in range(n):
        spec = experiment(i)
        spec["rpu"] = {**spec["rpu"], "config": family}
        found.append({**spec, "device": device})
    return found


def resnet_experiment(sizes: dict[str, Any], family: str, device: str) -> dict[str, Any]:
    from benchmarks.resnet import experiment

    args = argparse.Namespace(data=None, device=device, **{k: sizes[k] for k in RESNET_KEYS})
    spec = experiment(args)
    spec["rpu"] = {**spec["rpu"], "config": family}
    return spec


RESNET_KEYS = ("depth", "train", "test", "batch_size", "epochs")


def workflow(experiments: list[dict[str, Any]], report: Path) -> dict[str, Any]:
    """hwa-training.yaml's shape, the experiments inline, the reporter without plots."""
    return {
        "name": "gpu-benchmark",
        "aims": {
            "experiments": {"type": "experiment-source", "params": {"experiments": experiments}},
            "validator": {"type": "analog-validator"},
            "simulator": {"type": "analog-simulator", "placement": "process"},
            "reporter": {
                "type": "analog-reporter",
                "params": {"plots": False, "folder": str(report)},
            },
        },
        "connections": [
            "experiments.experiments -> validator.experiments",
            "validator.jobs -> simulator.jobs",
            "validator.rejections -> reporter.rejections",
            "simulator.metrics -> reporter.metrics",
            "simulator.results -> reporter.results",
        ],
    }


def aif_run(experiments: list[dict[str, Any]], work: Path, timeout: float) -> dict[str, Any]:
    """One ``aif run`` (stopped after ``timeout`` s): epoch rows, job results, wall time."""
    from benchmarks.overhead import aif_command

    work.mkdir(parents=True)
    report = work / "report"
    path = work / "workflow.yaml"
    path.write_text(yaml.safe_dump(workflow(experiments, report), sort_keys=False))
    command = [*aif_command(), "run", str(path), "--state-dir", str(work / "state"), "-q"]
    # aif run forks its AIMs from a preloaded process; a CUDA driver initialised there
    # would fail every fork's GPU use, and torch.cuda.is_available() is fork-safe only
    # when it asks NVML instead of the driver
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        output, _ = process.communicate(timeout=max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    wall = time.perf_counter() - start
    rows = []
    if (report / "metrics.csv").exists():
        with (report / "metrics.csv").open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    jobs = []
    if (report / "results.json").exists():
        jobs = json.loads((report / "results.json").read_text(encoding="utf-8"))["jobs"]
    failed = [j for j in jobs if j.get("status") != "completed"]
    if not timed_out and (process.returncode != 0 or failed or not rows):
        detail = "; ".join(f"{j['job']}: {j.get('error')}" for j in failed) or output[-3000:]
        raise RuntimeError(f"aif run failed ({process.returncode}): {detail}")
    return {"rows": rows, "jobs": jobs, "wall": wall, "timed_out": timed_out}


def summarise(run: dict[str, Any], images: int | None) -> dict[str, Any]:
    """Epoch seconds (all, steady), images per second, accuracy, wall time."""
    epochs = [float(r["seconds"]) for r in run["rows"]]
    first = [float(r["seconds"]) for r in run["rows"] if int(r["epoch"]) == 1]
    later = [float(r["seconds"]) for r in run["rows"] if int(r["epoch"]) > 1]
    steady = statistics.median(later) if later else (statistics.median(first) if first else None)
    accuracies = [j["accuracy"] for j in run["jobs"] if j.get("accuracy") is not None]
    found: dict[str, Any] = {
        "epochs_done": len(epochs),
        "epoch_s": [round(e, 3) for e in epochs],
        "steady_epoch_s": steady,
        "mean_epoch_s": statistics.mean(epochs) if epochs else None,
        "wall_s": run["wall"],
        "accuracy": statistics.mean(accuracies) if accuracies else None,
        "timed_out": run["timed_out"],
    }
    if images and steady:
        found["images_per_s"] = images / steady
    return found


def speedup(results: dict[str, dict[str, Any]], key: str) -> float | None:
    cpu, gpu = results.get("cpu", {}).get(key), results.get("cuda", {}).get(key)
    return cpu / gpu if cpu and gpu else None


# --------------------------------------------------------------------------- main


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n", 2)[2]
    )
    parser.add_argument("--devices", default="cuda,cpu", help="comma-separated (cuda,cpu)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the self-test)")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds for all runs (330)")
    parser.add_argument("--family", help="RPU config family on every device (default: see above)")
    parser.add_argument("--workloads", default="sweep,resnet", help="comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    devices = [d for d in args.devices.split(",") if d]
    workloads = [w for w in args.workloads.split(",") if w]
    sizes = QUICK if args.quick else FULL

    say("probing torch and aihwkit")
    found = probe()
    if "cuda" in devices and found["gpu"] is None:
        say("torch sees no GPU: cuda left out")
        devices = [d for d in devices if d != "cuda"]
    family = family_for(devices, found, args.family)
    say(
        f"torch {found['torch']} (CUDA {found['torch_cuda']}), GPU {found['gpu']}, "
        f"aihwkit {found['aihwkit']} with CUDA: {found['aihwkit_cuda']}; family {family}"
    )

    results: dict[str, dict[str, dict[str, Any]]] = {w: {} for w in workloads}
    runs = [(w, d) for w in workloads for d in devices]
    deadline = time.perf_counter() + args.budget
    work = Path(tempfile.mkdtemp(prefix="aif-gpu-"))
    try:
        for index, (load, device) in enumerate(runs):
            left = deadline - time.perf_counter()
            share = left / (len(runs) - index)
            if load == "sweep":
                experiments = sweep_experiments(sizes["experiments"], family, device)
                images = None
            else:
                experiments = [resnet_experiment(sizes, family, device)]
                images = sizes["train"]
            say(f"{load} on {device}: {len(experiments)} experiment(s), up to {share:.0f} s")
            run = aif_run(experiments, work / f"{load}-{device}", share)
            results[load][device] = summarise(run, images)
            done = results[load][device]
            say(
                f"{load} on {device}: {done['epochs_done']} epochs, steady "
                f"{done['steady_epoch_s']} s/epoch, wall {run['wall']:.1f} s"
                + (" (stopped at its share of the budget)" if run["timed_out"] else "")
            )
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)

    line = {
        "cuda_speedup": speedup(results.get("resnet", {}), "steady_epoch_s"),
        "sweep_cuda_speedup": speedup(results.get("sweep", {}), "mean_epoch_s"),
        "family": family,
        "devices": devices,
        **found,
        "sizes": {"quick": args.quick, **sizes},
        **results,
        "machine": describe(),
    }
    print(json.dumps(rounded(line)))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
