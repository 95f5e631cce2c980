"""ResNet hardware-aware training per epoch: ``aif run`` against the same training by hand.

Run: ``python -m benchmarks.resnet [--quick] [--data DIR] [--repeats N] [--epochs N]``

Both sides train the CIFAR ResNet of ``aif.aims.analog.zoo`` (ResNet-32; ResNet-20 with
``--quick``) hardware-aware on 3x32x32 images: generated CIFAR-format data
(``dataset: synthetic`` with ``channels: 3, image_size: 32``, 10 classes), or the real
CIFAR-10 binary files with ``--data DIR``; per-channel normalisation, random crop (4) and
flip of each training batch, every Conv2d and Linear on an ``InferenceRPUConfig`` tile
with the noise of ``workflows/experiments/hwa-cnn.yml`` (output noise 0.02, additive
weight noise 0.05 while training, ``PCMLikeNoiseModel(g_max=25)``), ``AnalogSGD`` (lr
0.05, momentum 0.9, halved every 5 epochs), seed 0. What is timed is one epoch: all
training batches, then test accuracy.

* aif: ``aif run`` of a workflow of the shape of ``workflows/hwa-training.yaml`` (the
  shipped file with only its experiment file renamed: experiment source, validator,
  simulator in its own process, reporter) on an experiment with ``model: {zoo: resnet}``
  and no drift inference. Epoch times are the simulator's own: the ``seconds`` of its
  per-epoch ``metrics`` records (training slices plus test accuracy, timed with
  ``perf_counter`` inside the simulator), read back from the reporter's ``metrics.csv``.
* plain: this module run as ``--plain-child``, the script a researcher would write with
  torch and aihwkit alone: the same torch module built by the same zoo factory (the only
  aif import, done before anything is timed), ``convert_to_analog`` with the RPU
  configuration of ``benchmarks/plain_aihwkit.py``, the same data tensors (written by the
  parent from aif's own loader), the same batches (order and augmentation drawn from
  generators seeded by (seed, epoch) and (seed, epoch, batch), as aif draws them),
  timing each epoch with ``perf_counter``.

Each run is a fresh process; the runs alternate plain, aif, plain, aif... and the ratio
is the median aif epoch time over the median plain epoch time, over every epoch of every
run. Both sides run with ``OMP_WAIT_POLICY=PASSIVE`` (see ``benchmarks/overhead.py``).

The last line printed is one JSON object with ``epoch_ratio`` (target at most 1.05),
``images_per_s`` of both sides (training images per second of epoch time), the model,
epochs, batch size, samples, device, every epoch time and the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.overhead import (
    MIRRORED,
    ROOT,
    TARGET,
    WORKFLOW,
    aif_command,
    environment,
    load_experiment,
    machine,
    rounded,
    timed,
)

EXPERIMENT_FILE = "experiments/resnet.yml"
#: The crop and flip of CIFAR training batches, on both sides.
AUGMENT = {"crop": 4, "flip": True}
#: ``--quick`` and the default: depth, training and test images, batch size, epochs, repeats.
QUICK = {"depth": 20, "train": 256, "test": 64, "batch_size": 64, "epochs": 2, "repeats": 2}
FULL = {"depth": 32, "train": 2048, "test": 512, "batch_size": 128, "epochs": 2, "repeats": 3}


# --------------------------------------------------------------------------- set-up


def experiment(args: argparse.Namespace) -> dict[str, Any]:
    """The aif experiment: a zoo ResNet, HWA-trained with hwa-cnn's tiles and optimizer."""
    common = {
        "max_train": args.train,
        "max_test": args.test,
        "normalize": "channel",
        "augment": AUGMENT,
        "batch_size": args.batch_size,
    }
    if args.data:
        dataset = {"name": "cifar10", "path": str(Path(args.data).resolve()), **common}
    else:
        # a few spare samples on each side of the split, so max_train and max_test
        # give exactly the sizes asked for whatever the split rounds to
        samples = args.train + args.test + 10
        dataset = {
            "name": "synthetic",
            "channels": 3,
            "image_size": 32,
            "classes": 10,
            "samples": samples,
            "test_fraction": (args.test + 5) / samples,
            **common,
        }
    training = MIRRORED["training"]
    return {
        "name": f"resnet{args.depth}-hwa",
        "description": "benchmarks/resnet.py: CIFAR ResNet, hardware-aware trained",
        "dataset": dataset,
        "model": {"zoo": "resnet", "args": {"depth": args.depth}},
        "rpu": MIRRORED["rpu"],
        "training": {**training, "epochs": args.epochs},
        "device": args.device,
    }


def prepare(folder: Path, spec: dict[str, Any]) -> Path:
    """hwa-training.yaml running ``spec`` instead of hwa-cnn, written into ``folder``."""
    load_experiment()  # MIRRORED still says what the shipped hwa experiment says
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    aims = workflow["aims"]
    if {a["type"] for a in aims.values()} != {
        "experiment-source",
        "analog-validator",
        "analog-simulator",
        "analog-reporter",
    }:
        raise SystemExit(f"{WORKFLOW} changed shape: it is no longer source, validator, ...")
    aims["experiments"]["params"]["files"] = [EXPERIMENT_FILE]
    (folder / EXPERIMENT_FILE).parent.mkdir(parents=True)
    (folder / EXPERIMENT_FILE).write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    path = folder / WORKFLOW.name
    path.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    return path


def write_data(folder: Path, spec: dict[str, Any], args: argparse.Namespace) -> Path:
    """The tensors aif's loader gives for ``spec``'s data set, as ``data.npz`` for the
    plain side, with what else it must know in ``plain.json``."""
    import numpy as np

    from aif.aims.analog.datasets import load_dataset
    from aif.aims.analog.spec import DatasetSpec

    data = load_dataset(DatasetSpec.model_validate(spec["dataset"]), folder)
    if (len(data.y_train), len(data.y_test)) != (args.train, args.test):
        raise SystemExit(
            f"the data set gives {len(data.y_train)} training and {len(data.y_test)} test "
            f"images, not {args.train} and {args.test}"
        )
    if args.train % args.batch_size == 1:
        # aif joins a last batch of one to the one before (BatchNorm); keep both sides simple
        raise SystemExit("--train leaves a last batch of one image; change it or --batch-size")
    np.savez(
        folder / "data.npz",
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
    )
    settings = {
        "depth": args.depth,
        "classes": data.classes,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "seed": int(spec["training"]["seed"]),
        "device": args.device,
        **AUGMENT,
    }
    (folder / "plain.json").write_text(json.dumps(settings), encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- one run each


def run_aif(workflow: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """One ``aif run``: the simulator's epoch times and accuracies, and the run's wall time."""
    work.mkdir(parents=True)
    out = work / "result.json"
    command = [*aif_command(), "run", str(workflow), "--state-dir", str(work / "state")]
    done, wall, cpu = timed([*command, "-q", "--json", str(out)], work, env)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"aif run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(out.read_text(encoding="utf-8"))
    if result["state"] != "succeeded":
        raise SystemExit(f"aif run did not succeed: {result['state']}: {result['error']}")
    report = Path(result["results"]["reporter"]["folder"])
    job = json.loads((report / "results.json").read_text(encoding="utf-8"))["jobs"][0]
    if job["status"] != "completed":
        raise SystemExit(f"aif's job did not complete: {job['status']}: {job['error']}")
    with (report / "metrics.csv").open(encoding="utf-8", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: int(r["epoch"]))
    return {
        "epochs": [float(r["seconds"]) for r in rows],
        "losses": [float(r["loss"]) for r in rows],
        "accuracy": job["accuracy"],
        "wall": wall,
        "cpu": cpu,
    }


def run_plain(data: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """One run of the hand-written training (this module's ``--plain-child``)."""
    work.mkdir(parents=True)
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "benchmarks.resnet", "--plain-child", str(data)]
    done, wall, cpu = timed(command, work, env)
    if done.returncode != 0:
        raise SystemExit(f"the plain training failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall": wall, "cpu": cpu}


# --------------------------------------------------------------------------- the plain side


def plain_child(folder: Path) -> int:
    """The training as one writes it with torch and aihwkit; prints one JSON line.

    aif is imported only to build the digital ResNet with the same factory, before any
    clock starts; what is timed is torch and aihwkit alone.
    """
    import numpy as np
    import torch
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.optim import AnalogSGD

    from aif.aims.analog.zoo import build_zoo_model
    from benchmarks.plain_aihwkit import GAMMA, LR, MOMENTUM, STEP_SIZE, rpu_config

    s = json.loads((folder / "plain.json").read_text(encoding="utf-8"))
    with np.load(folder / "data.npz") as arrays:
        x_train, y_train, x_test, y_test = (
            torch.from_numpy(arrays[k]) for k in ("x_train", "y_train", "x_test", "y_test")
        )
    device, seed, bs = torch.device(s["device"]), s["seed"], s["batch_size"]
    torch.manual_seed(seed)
    np.random.seed(seed)
    digital = build_zoo_model("resnet", {"depth": s["depth"]}, (3, 32, 32), s["classes"])
    model = convert_to_analog(digital, rpu_config()).to(device)
    optimizer = AnalogSGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    optimizer.regroup_param_groups(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=STEP_SIZE, gamma=GAMMA)

    def augment(x: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
        """Pad by ``crop``, crop back at a random offset, mirror half: per image."""
        entropy = np.random.SeedSequence([seed, epoch, batch]).generate_state(1, np.uint64)
        g = torch.Generator().manual_seed(int(entropy[0] >> 1))
        n, _, h, w = x.shape
        pad = s["crop"]
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).tolist()
        crops = [
            padded[i, :, a : a + h, b : b + w] for i, (a, b) in enumerate(zip(dy, dx, strict=True))
        ]
        out = torch.stack(crops)
        flip = torch.rand(n, generator=g) < 0.5
        return torch.where(flip[:, None, None, None], out.flip(-1), out)

    def test_accuracy() -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for lo in range(0, len(y_test), bs):
                out = model(x_test[lo : lo + bs].to(device))
                correct += int((out.argmax(1) == y_test[lo : lo + bs].to(device)).sum())
        model.train()
        return correct / len(y_test)

    epochs, losses, accuracy = [], [], float("nan")
    for epoch in range(1, s["epochs"] + 1):
        start = time.perf_counter()
        model.train()
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(y_train)))
        total = 0.0
        for batch, lo in enumerate(range(0, len(order), bs)):
            index = order[lo : lo + bs]
            xb, yb = augment(x_train[index], epoch, batch).to(device), y_train[index].to(device)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.item()) * len(index)
        accuracy = test_accuracy()
        epochs.append(time.perf_counter() - start)
        losses.append(total / len(y_train))
        scheduler.step()
        print(f"epoch {epoch}: {epochs[-1]:.2f} s, loss {losses[-1]:.4f}, test {accuracy:.4f}")
    print(json.dumps({"epochs": epochs, "losses": losses, "accuracy": accuracy}))
    return 0


# --------------------------------------------------------------------------- report


def report(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    m = machine()
    model = f"resnet{args.depth}"
    data = f"CIFAR-10 from {args.data}" if args.data else "generated 3x32x32 data"
    print(
        f"\naif run vs plain aihwkit: {model} HWA training on {data}, {args.train} training / "
        f"{args.test} test images, batches of {args.batch_size}, {args.epochs} epochs, "
        f"{args.device} ({m['cpu']}, {m['nproc']} cores, {m['torch_threads']} torch threads, "
        "OMP_WAIT_POLICY=PASSIVE)\n"
    )
    print(
        f"{'run':>3}  {'side':<5}  {'epoch times (s)':<28} {'loss':>7} {'test acc':>8} "
        f"{'wall (s)':>9}"
    )
    for i, (p, a) in enumerate(zip(runs["plain"], runs["aif"], strict=True), 1):
        for side, r in (("plain", p), ("aif", a)):
            times = " ".join(f"{t:6.2f}" for t in r["epochs"])
            print(
                f"{i:3d}  {side:<5}  {times:<28} {r['losses'][-1]:7.4f} {r['accuracy']:8.4f} "
                f"{r['wall']:9.1f}"
            )
    epoch = {
        side: statistics.median(t for r in rs for t in r["epochs"]) for side, rs in runs.items()
    }
    wall = {side: statistics.median(r["wall"] for r in rs) for side, rs in runs.items()}
    ratio = epoch["aif"] / epoch["plain"]
    images = {side: args.train / seconds for side, seconds in epoch.items()}
    met = ratio <= TARGET
    print(
        f"\nmedian epoch (s): aif {epoch['aif']:.2f}, plain {epoch['plain']:.2f}, "
        f"ratio {ratio:.3f}  ({images['aif']:.1f} vs {images['plain']:.1f} images/s)"
    )
    print(
        f"median whole run (s): aif {wall['aif']:.1f}, plain {wall['plain']:.1f}, "
        f"ratio {wall['aif'] / wall['plain']:.2f} (start-up, validator and reporter included)"
    )
    print(f"\ntarget epoch_ratio <= {TARGET}: {'met' if met else 'MISSED'} ({ratio:.3f})")
    return {
        "epoch_ratio": round(ratio, 3),
        "target": TARGET,
        "target_met": met,
        "images_per_s": images,
        "epoch_s": epoch,
        "run_wall_s": wall,
        "model": model,
        "data": "cifar10" if args.data else "synthetic",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "samples": {"train": args.train, "test": args.test},
        "device": args.device,
        "repeats": args.repeats,
        "quick": args.quick,
        "epoch_times": {side: [r["epochs"] for r in rs] for side, rs in runs.items()},
        "accuracy": {side: [r["accuracy"] for r in rs] for side, rs in runs.items()},
        "machine": m,
    }


# --------------------------------------------------------------------------- main


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.resnet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="ResNet-20, 256 images, 2 epochs, 2 repeats"
    )
    parser.add_argument("--data", help="a folder of CIFAR-10 binary files (default: generated)")
    parser.add_argument("--depth", type=int, choices=[20, 32, 56], help="ResNet depth (32)")
    parser.add_argument("--train", type=int, help="training images (2048)")
    parser.add_argument("--test", type=int, help="test images (512)")
    parser.add_argument("--batch-size", type=int, help="(128)")
    parser.add_argument("--epochs", type=int, help="epochs per run (2)")
    parser.add_argument("--repeats", type=int, help="runs per side, alternating (3)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--plain-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_child:
        return plain_child(Path(args.plain_child))
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.train, args.test, args.batch_size, args.epochs, args.repeats) < 1:
        parser.error("--train, --test, --batch-size, --epochs and --repeats must be at least 1")
    env = environment("passive")
    started = time.perf_counter()
    temp = Path(tempfile.mkdtemp(prefix="aif-resnet-"))
    try:
        spec = experiment(args)
        workflow = prepare(temp / "workflow", spec)
        data = write_data(temp / "workflow", spec, args)
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "aif": []}
        for i in range(1, args.repeats + 1):
            print(f"  run {i}/{args.repeats}: plain ...", file=sys.stderr, flush=True)
            runs["plain"].append(run_plain(data, temp / f"plain-{i}", env))
            print(f"  run {i}/{args.repeats}: aif ...", file=sys.stderr, flush=True)
            runs["aif"].append(run_aif(workflow, temp / f"aif-{i}", env))
        summary = report(runs, args)
    finally:
        if args.keep:
            print(f"  kept {temp}", file=sys.stderr)
        else:
            shutil.rmtree(temp, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(rounded(summary), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
