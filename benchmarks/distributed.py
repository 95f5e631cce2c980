"""Data-parallel training: images per second on 1 rank and on N ranks, and the accuracy gap.

Run: ``python -m benchmarks.distributed [--quick] [--ranks 1,2] [--repeats N] [--epochs N]``

Every run is an ``aif run`` of the shipped ``workflows/hwa-training.yaml`` (experiment
source, validator, simulator in its own process, reporter) on the shipped hardware-aware
CNN (``workflows/experiments/hwa-cnn.yml``: two analog Conv2d and a Linear on
``InferenceRPUConfig`` tiles with PCM noise) on all of scikit-learn's digits, with one
global batch size and seed for every rank count; drift inference is left out. A run with
``training.distributed.ranks: N`` (N > 1) trains on N rank processes the simulator
starts (gloo); ``ranks: 1`` trains in the simulator itself, as a user's job without
``distributed`` does. Runs alternate over the rank counts, ``--repeats`` times, after
one untimed run that warms the file cache.

Images per second are training images over the median epoch time (the ``seconds`` of
the simulator's per-epoch ``metrics``, measured by rank 0: every batch of the epoch plus
the test accuracy, reduced over the ranks). ``scaling`` is the images per second of the
largest rank count over those of 1 rank; ``accuracy_gap`` the largest difference of the
final test accuracy (median over repeats) from 1 rank's.

Where the time goes: a third kind of run trains 1 rank on the share of each batch one of
N ranks gets (``batch_size / N``) with the threads one of N ranks gets (``cores / N``).
Its time per batch is what a rank computes; a rank's time per batch beyond it is what
data parallelism adds (DDP's gradient all-reduce, the per-batch control broadcast,
the ranks waiting for each other). The start-up of the rank processes (a fresh Python
importing torch and aihwkit, the rendezvous) is the difference in whole-run wall time
not explained by the epochs.

The last line printed is one JSON object with ``ranks``, ``images_per_s`` (by rank
count), ``scaling``, ``accuracy_gap``, the per-batch breakdown and the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.overhead import environment, load_experiment, machine
from benchmarks.resnet import prepare, run_aif

QUICK = {"epochs": 2, "repeats": 1, "batch_size": 64}
FULL = {"epochs": 8, "repeats": 2, "batch_size": 64}
#: Training images of digits with aif's default 20 % test split.
TRAIN_IMAGES = 1437


def experiment(ranks: int, args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    """The shipped hwa-cnn experiment, on ``ranks`` ranks, without drift inference."""
    spec = copy.deepcopy(load_experiment())
    spec.pop("inference", None)
    spec.pop("checkpoint", None)
    spec["name"] = f"ddp-{ranks}"
    spec["dataset"]["batch_size"] = batch_size
    spec["training"]["epochs"] = args.epochs
    spec["training"]["seed"] = 0
    if ranks > 1:
        spec["training"]["distributed"] = {"ranks": ranks, "backend": "gloo"}
    return spec


def one_run(
    folder: Path, spec: dict[str, Any], threads: int | None, env: dict[str, str]
) -> dict[str, Any]:
    """``aif run`` of ``spec``; the simulator's ``threads`` parameter when given."""
    import yaml

    workflow = prepare(folder, spec)
    if threads:
        data = yaml.safe_load(workflow.read_text(encoding="utf-8"))
        data["aims"]["simulator"].setdefault("params", {})["threads"] = threads
        workflow.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return run_aif(workflow, folder / "run", env)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, one repeat")
    parser.add_argument("--ranks", default="1,2", help="rank counts, e.g. 1,2 or 1,4,8")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="the global batch")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    args.epochs = args.epochs or base["epochs"]
    args.repeats = args.repeats or base["repeats"]
    batch = args.batch_size or base["batch_size"]
    counts = sorted({int(r) for r in args.ranks.split(",")} | {1})
    most = max(counts)
    env = environment("passive")
    kinds = [(f"{n} ranks" if n > 1 else "1 rank", n, batch, None) for n in counts]
    if most > 1:  # one rank's share of the work, for the breakdown
        kinds.append(("share", 1, batch // most, max(1, cores() // most)))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in kinds}
    with tempfile.TemporaryDirectory(prefix="aif-bench-ddp-") as tmp:
        # untimed: the first run of a session pays for cold files (torch, aihwkit)
        warm = Path(tmp) / "warm-up"
        warm.mkdir()
        one_run(warm, experiment(most, argparse.Namespace(epochs=1), batch), None, env)
        for repeat in range(args.repeats):
            for name, ranks, size, threads in kinds:
                folder = Path(tmp) / f"{repeat}-{name.replace(' ', '-')}"
                folder.mkdir()
                result = one_run(folder, experiment(ranks, args, size), threads, env)
                runs[name].append(result)
                print(
                    f"repeat {repeat + 1}, {name:>8}: epochs "
                    + " ".join(f"{t:.2f}" for t in result["epochs"])
                    + f" s, accuracy {result['accuracy']:.4f}, run {result['wall']:.1f} s",
                    flush=True,
                )
    summary = report(runs, counts, batch, args)
    print(json.dumps(summary))
    return 0


def report(
    runs: dict[str, list[dict[str, Any]]], counts: list[int], batch: int, args: argparse.Namespace
) -> dict[str, Any]:
    def name(n: int) -> str:
        return f"{n} ranks" if n > 1 else "1 rank"

    epoch = {n: statistics.median(t for r in runs[name(n)] for t in r["epochs"]) for n in counts}
    accuracy = {n: statistics.median(r["accuracy"] for r in runs[name(n)]) for n in counts}
    wall = {n: statistics.median(r["wall"] for r in runs[name(n)]) for n in counts}
    images = {n: TRAIN_IMAGES / epoch[n] for n in counts}
    most = max(counts)
    scaling = images[most] / images[1]
    gap = max(abs(accuracy[n] - accuracy[1]) for n in counts)
    batches = math.ceil(TRAIN_IMAGES / batch)
    m = machine()
    print(
        f"\nhwa-cnn on digits ({TRAIN_IMAGES} training images), global batch {batch}, "
        f"{args.epochs} epochs, gloo on {m['cpu']} ({m['nproc']} cores)\n"
    )
    print(f"{'ranks':>5} {'epoch (s)':>10} {'images/s':>9} {'accuracy':>9} {'run (s)':>8}")
    for n in counts:
        print(f"{n:5d} {epoch[n]:10.2f} {images[n]:9.1f} {accuracy[n]:9.4f} {wall[n]:8.1f}")
    out: dict[str, Any] = {
        "ranks": counts,
        "images_per_s": {str(n): round(images[n], 1) for n in counts},
        "scaling": round(scaling, 3),
        "accuracy_gap": round(gap, 4),
        "accuracy": {str(n): round(accuracy[n], 4) for n in counts},
        "epoch_s": {str(n): round(epoch[n], 3) for n in counts},
        "run_wall_s": {str(n): round(wall[n], 1) for n in counts},
        "global_batch": batch,
        "epochs": args.epochs,
        "repeats": args.repeats,
    }
    if most > 1 and runs.get("share"):
        share = statistics.median(t for r in runs["share"] for t in r["epochs"])
        share_batches = math.ceil(TRAIN_IMAGES / (batch // most))
        compute_ms = 1000 * share / share_batches
        rank_ms = 1000 * epoch[most] / batches
        one_ms = 1000 * epoch[1] / batches
        startup = wall[most] - wall[1] - args.epochs * (epoch[most] - epoch[1])
        share_threads = max(1, cores() // most)
        print(
            f"\nper global batch of {batch}: 1 rank {one_ms:.1f} ms; each of {most} ranks "
            f"{rank_ms:.1f} ms, of which computing its share of {batch // most} images "
            f"(1 rank, {share_threads} thread{'s' if share_threads > 1 else ''}) "
            f"{compute_ms:.1f} ms and data "
            f"parallelism (all-reduce, control broadcast, waiting) {rank_ms - compute_ms:.1f} "
            f"ms; starting the {most} rank processes about {startup:.1f} s per run"
        )
        out["per_batch_ms"] = {
            "one_rank": round(one_ms, 2),
            "per_rank": round(rank_ms, 2),
            "share_compute": round(compute_ms, 2),
            "data_parallel_overhead": round(rank_ms - compute_ms, 2),
        }
        out["rank_startup_s"] = round(startup, 1)
    print(f"\nscaling ({most} ranks over 1): {scaling:.3f}; accuracy gap {gap:.4f}")
    out["machine"] = m
    return out


if __name__ == "__main__":
    sys.exit(main())
