"""``aif run`` of the main job against the same job written by hand with aihwkit.

Run: ``python -m benchmarks.overhead [--quick] [--rounds N] [--epochs N]``

Both sides do the same work: hardware-aware training of the small analog CNN of
``workflows/experiments/hwa-cnn.yml`` on scikit-learn's digits (same split and
scaling, same ``InferenceRPUConfig``, optimizer, schedule, batch size, epochs and
seed), the weights saved, then test accuracy after 1 s, 1 h, 1 d and 1 y of drift over
the same number of programming draws, with and without compensation.

* aif: ``aif run hwa-training.yaml --state-dir <fresh> -q --json <file>``: the shipped
  workflow file, unchanged (experiment source, validator, simulator in its own
  process, reporter writing its CSV, JSON and two plots), copied into a temporary
  folder beside a copy of the experiment in which only ``training.epochs`` (and, in
  quick mode, ``inference.repetitions``) are rewritten.
* plain: ``python benchmarks/plain_aihwkit.py``, the job as one would write it with
  aihwkit alone; it prints its accuracies and draws no figures.

Each side is a fresh process every time, so both pay interpreter start, the imports
of torch and aihwkit, and exit. After one untimed warm-up run of each, the rounds
alternate: aif, plain, aif, plain... Besides wall time, each run's CPU time (user +
system, its child processes included) shows how much work each side does.

Both sides run with ``OMP_WAIT_POLICY=PASSIVE`` unless ``--omp-wait-policy inherit``:
on this 2-core machine, with libgomp's default (spinning) wait policy, single batches
of aihwkit training sometimes take about 250 ms instead of 10 ms, so that whole
epochs run 10-30 times slower, on either side at random; that would swamp what is
measured here. After the rounds, one more aif run, through the public ``Controller``
API with an event listener instead of the CLI, splits aif's time into phases beside
the plain script's own phase times (``--no-breakdown`` skips it).

The last line printed is one JSON object with ``overhead_ratio`` (median aif wall
time / median plain wall time), the medians, every round and the accuracies.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "workflows" / "hwa-training.yaml"
EXPERIMENT = ROOT / "workflows" / "experiments" / "hwa-cnn.yml"
PLAIN = ROOT / "benchmarks" / "plain_aihwkit.py"
TARGET = 1.05
#: Accuracies of the two sides further apart than this suggest they did not do the same
#: work (HWA training with analog noise varies by about 0.01-0.02 from run to run).
ACCURACY_TOLERANCE = 0.05

#: What ``plain_aihwkit.py`` writes out by hand: ``hwa-cnn.yml`` without its name,
#: description, checkpoint name, ``training.epochs`` and ``inference.repetitions``
#: (the last two are passed to both sides). If the shipped experiment changes, the
#: plain script must change with it, and this with both.
MIRRORED: dict[str, Any] = {
    "dataset": {"name": "digits", "batch_size": 32, "normalize": "unit"},
    "model": {
        "convert": "all",
        "layers": [
            {"type": "Conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
            "ReLU",
            {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1},
            "ReLU",
            {"type": "MaxPool2d", "kernel_size": 2},
            "Flatten",
            {"type": "Linear", "out_features": 10},
        ],
    },
    "rpu": {
        "config": "InferenceRPUConfig",
        "forward": {"out_noise": 0.02},
        "modifier": {"type": "ADD_NORMAL", "std_dev": 0.05},
        "noise_model": {"name": "PCMLikeNoiseModel", "params": {"g_max": 25.0}},
        "drift_compensation": "GlobalDriftCompensation",
    },
    "training": {
        "optimizer": {"name": "AnalogSGD", "lr": 0.05, "params": {"momentum": 0.9}},
        "schedule": {"name": "step", "step_size": 5, "gamma": 0.5},
        "seed": 0,
    },
    "inference": {"drift_times": ["1s", "1h", "1d", "1y"], "compensation": "both"},
}


# --------------------------------------------------------------------------- set-up


def load_experiment() -> dict[str, Any]:
    """The shipped experiment, checked against what the plain script replicates."""
    experiment = yaml.safe_load(EXPERIMENT.read_text(encoding="utf-8"))
    mirrored = copy.deepcopy(experiment)
    for key in ("name", "description", "checkpoint"):
        mirrored.pop(key, None)
    mirrored.get("training", {}).pop("epochs", None)
    mirrored.get("inference", {}).pop("repetitions", None)
    if mirrored != MIRRORED:
        differ = sorted(k for k in {*mirrored, *MIRRORED} if mirrored.get(k) != MIRRORED.get(k))
        raise SystemExit(
            f"{EXPERIMENT.relative_to(ROOT)} no longer matches what benchmarks/plain_aihwkit.py "
            f"writes by hand (sections {', '.join(differ)} differ); update the plain script "
            "and MIRRORED in benchmarks/overhead.py together"
        )
    return dict(experiment)


def prepare(folder: Path, epochs: int, repetitions: int) -> Path:
    """The shipped workflow and its experiment (epochs, repetitions rewritten) in ``folder``."""
    experiment = load_experiment()
    experiment["training"] = {**experiment["training"], "epochs": epochs}
    experiment["inference"] = {**experiment["inference"], "repetitions": repetitions}
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    files = workflow["aims"]["experiments"]["params"]["files"]
    if files != [f"experiments/{EXPERIMENT.name}"] or "reporter" not in workflow["aims"]:
        raise SystemExit(f"{WORKFLOW} changed shape: it no longer runs {EXPERIMENT.name} alone")
    (folder / "experiments").mkdir(parents=True)
    (folder / "experiments" / EXPERIMENT.name).write_text(
        yaml.safe_dump(experiment, sort_keys=False), encoding="utf-8"
    )
    shutil.copyfile(WORKFLOW, folder / WORKFLOW.name)
    return folder / WORKFLOW.name


def aif_command() -> list[str]:
    """The ``aif`` console script beside this interpreter (``python -m aif.cli.main`` if none)."""
    script = Path(sys.executable).parent / "aif"
    if script.exists():
        return [str(script)]
    found = shutil.which("aif")
    return [found] if found else [sys.executable, "-m", "aif.cli.main"]


def environment(policy: str) -> dict[str, str]:
    env = dict(os.environ)
    if policy != "inherit":
        env["OMP_WAIT_POLICY"] = policy.upper()
    return env


# --------------------------------------------------------------------------- one run each


def timed(command: list[str], work: Path, env: dict[str, str]) -> tuple[Any, float, float]:
    """Run ``command``; its result, wall seconds and CPU seconds (its child processes too)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return done, wall, cpu


def run_aif(workflow: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """One ``aif run`` in a fresh process; wall time and what the run reported."""
    work.mkdir(parents=True)
    out = work / "result.json"
    command = [
        *aif_command(),
        "run",
        str(workflow),
        "--state-dir",
        str(work / "state"),
        "-q",
        "--json",
        str(out),
    ]
    done, wall, cpu = timed(command, work, env)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"aif run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(out.read_text(encoding="utf-8"))
    if result["state"] != "succeeded":
        raise SystemExit(f"aif run did not succeed: {result['state']}: {result['error']}")
    report = Path(result["results"]["reporter"]["folder"])
    job = json.loads((report / "results.json").read_text(encoding="utf-8"))["jobs"][0]
    if job["status"] != "completed":
        raise SystemExit(f"aif's job did not complete: {job['status']}: {job['error']}")
    return {
        "wall": wall,
        "cpu": cpu,
        "accuracy": job["accuracy"],
        "drift_mean": job["drift_mean"],
        "drift_mean_compensated": job["drift_mean_compensated"],
        "train": job["train_seconds"],
        "plots": sorted(p.name for p in report.glob("*.png")),
    }


def run_plain(epochs: int, repetitions: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """One run of the hand-written script in a fresh process."""
    work.mkdir(parents=True)
    command = [
        sys.executable,
        str(PLAIN),
        "--epochs",
        str(epochs),
        "--repetitions",
        str(repetitions),
        "--out",
        str(work),
    ]
    done, wall, cpu = timed(command, work, env)
    if done.returncode != 0:
        raise SystemExit(f"the plain script failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, **result, "train": result["seconds"]["train"]}


# --------------------------------------------------------------------------- the breakdown


def events_child(workflow: str, state_dir: str) -> int:
    """Run ``workflow`` as ``aif run`` does, printing each controller event with its time.

    Runs in its own process (``--events-of``); times are seconds since the parent
    spawned it (``AIF_BENCH_T0``), one JSON object per line on stdout.
    """
    t0 = float(os.environ["AIF_BENCH_T0"])

    def mark(what: str, **data: Any) -> None:
        print(json.dumps({"t": time.time() - t0, "mark": what, **data}), flush=True)

    mark("python")
    from aif import Controller, load_workflow, resolve

    mark("imported")

    async def main() -> bool:
        resolved = resolve(load_workflow(Path(workflow)))
        async with Controller(Path(state_dir)) as controller:

            def listen(event: Any) -> None:
                print(
                    json.dumps(
                        {
                            "t": event.time - t0,
                            "topic": event.topic,
                            "source": event.source,
                            "data": event.data,
                        },
                        default=str,
                    ),
                    flush=True,
                )

            controller.subscribe(listen)
            result = await controller.run_workflow(resolved)
            mark("run ended")
        mark("controller closed")
        return bool(result.ok)

    ok = asyncio.run(main())
    return 0 if ok else 1


def aif_phases(workflow: Path, work: Path, env: dict[str, str]) -> dict[str, float]:
    """Where one aif run spends its time, from the events of an instrumented run."""
    work.mkdir(parents=True)
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "benchmarks.overhead", "--events-of", str(workflow)]
    command += ["--state-dir", str(work / "state")]
    env["AIF_BENCH_T0"] = repr(time.time())
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    exited = time.time() - float(env["AIF_BENCH_T0"])
    if done.returncode != 0:
        raise SystemExit(f"the instrumented aif run failed:\n{done.stdout}\n{done.stderr}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    marks = {e["mark"]: e["t"] for e in lines if "mark" in e}

    def first(topic: str, source: str, key: str, value: Any = None) -> float:
        for e in lines:
            data = e.get("data", {})
            match = (e.get("topic"), e.get("source")) == (topic, source) and key in data
            if match and (value is None or data[key] == value):
                return float(e["t"])
        raise SystemExit(f"no {topic} event from {source} with {key}: {done.stdout}")

    epochs = [e for e in lines if e.get("source") == "simulator" and "step" in e.get("data", {})]
    starting = first("state", "controller", "run", "starting")
    running = first("state", "controller", "run", "running")
    validated = first("result", "validator", "accepted")
    first_epoch = float(epochs[0]["data"]["seconds"])
    first_epoch_end, last_epoch_end = float(epochs[0]["t"]), float(epochs[-1]["t"])
    simulated = first("state", "simulator", "state", "done")
    reported = first("result", "reporter", "folder")
    return {
        "start, imports of the CLI side": marks["imported"],
        "controller up, AIMs launched": starting - marks["imported"],
        "until every AIM is ready (child start)": running - starting,
        "validator (imports, check)": validated - running,
        "simulator: data, model, optimizer": first_epoch_end - first_epoch - validated,
        "training (epochs, with test)": last_epoch_end - first_epoch_end + first_epoch,
        "checkpoint, drift inference": simulated - last_epoch_end,
        "reporter: files, plots": reported - simulated,
        "run end, shutdown, exit": exited - reported,
        "  run end (child reaped)": marks["run ended"] - reported,
        "  controller closed": marks["controller closed"] - marks["run ended"],
        "  interpreter exit": exited - marks["controller closed"],
        "total": exited,
    }


def plain_phases(run: dict[str, Any]) -> dict[str, float]:
    s = run["seconds"]
    return {
        "imports (torch, aihwkit, sklearn)": s["imports"],
        "data, model, optimizer": s["data"] + s["build"],
        "training (epochs, with test)": s["train"],
        "checkpoint, drift inference": s["save"] + s["drift"],
        "interpreter start and exit": run["wall"] - s["total"],
        "total": run["wall"],
    }


#: Which plain phase does the work of each aif phase (None: aif only).
PAIRS: dict[str, str | None] = {
    "start, imports of the CLI side": None,
    "controller up, AIMs launched": None,
    "until every AIM is ready (child start)": "imports (torch, aihwkit, sklearn)",
    "validator (imports, check)": None,
    "simulator: data, model, optimizer": "data, model, optimizer",
    "training (epochs, with test)": "training (epochs, with test)",
    "checkpoint, drift inference": "checkpoint, drift inference",
    "reporter: files, plots": None,
    "run end, shutdown, exit": "interpreter start and exit",
    "total": "total",
}


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    import numpy
    import torch

    try:
        from importlib.metadata import version

        aihwkit = version("aihwkit")
    except Exception:
        aihwkit = "unknown"
    return describe(
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        aihwkit=aihwkit,
        numpy=numpy.__version__,
    )


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits, so the JSON line stays readable."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def report(
    runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace, env_note: str
) -> dict[str, Any]:
    aif, plain = runs["aif"], runs["plain"]
    m = machine()
    print(
        f"\naif run vs plain aihwkit: hwa-cnn, {args.epochs} epochs, {args.repetitions} "
        f"programming draws x 4 drift times ({m['cpu']}, {m['nproc']} cores, "
        f"{m['torch_threads']} torch threads, {env_note})\n"
    )
    print(f"{'':>5} {'wall time (s)':^26}   {'CPU time (s)':^19}")
    print(
        f"{'round':>5} {'aif':>8} {'plain':>8} {'ratio':>8}   {'aif':>5} {'plain':>6} {'ratio':>6}"
        "   accuracy aif / plain"
    )
    for i, (a, p) in enumerate(zip(aif, plain, strict=True), 1):
        print(
            f"{i:5d} {a['wall']:8.2f} {p['wall']:8.2f} {a['wall'] / p['wall']:8.2f}   "
            f"{a['cpu']:5.1f} {p['cpu']:6.1f} {a['cpu'] / p['cpu']:6.2f}   "
            f"{a['accuracy']:.4f} / {p['accuracy']:.4f}"
        )
    med = {
        (side, what): statistics.median(r[what] for r in rs)
        for side, rs in runs.items()
        for what in ("wall", "cpu")
    }
    med_aif, med_plain = med["aif", "wall"], med["plain", "wall"]
    ratio = med_aif / med_plain
    cpu_ratio = med["aif", "cpu"] / med["plain", "cpu"]
    print(
        f"{'median':>6}{med_aif:8.2f} {med_plain:8.2f} {ratio:8.2f}   "
        f"{med['aif', 'cpu']:5.1f} {med['plain', 'cpu']:6.1f} {cpu_ratio:6.2f}"
    )
    acc = {
        side: {
            "final": statistics.median(r["accuracy"] for r in rs),
            "drift_1y_compensated": statistics.median(r["drift_mean_compensated"][-1] for r in rs),
            "drift_1y_raw": statistics.median(r["drift_mean"][-1] for r in rs),
        }
        for side, rs in runs.items()
    }
    print("\nmedian test accuracy        aif    plain")
    for key, label in (
        ("final", "after training"),
        ("drift_1y_compensated", "1 y drift, compensated"),
        ("drift_1y_raw", "1 y drift, raw"),
    ):
        print(f"{label:>24} {acc['aif'][key]:8.4f} {acc['plain'][key]:8.4f}")
    similar = abs(acc["aif"]["final"] - acc["plain"]["final"]) <= ACCURACY_TOLERANCE
    if not similar:
        print(f"WARNING: final accuracies differ by more than {ACCURACY_TOLERANCE}")
    train = {side: statistics.median(r["train"] for r in rs) for side, rs in runs.items()}
    print(
        f"\ntraining alone (median s): aif {train['aif']:.2f}, plain {train['plain']:.2f}; "
        f"aif drew {', '.join(aif[0]['plots']) or 'no plots'}, the plain script none"
    )
    met = ratio <= TARGET
    print(f"\ntarget overhead_ratio <= {TARGET}: {'met' if met else 'MISSED'} ({ratio:.3f})")
    return {
        "overhead_ratio": round(ratio, 3),
        "target": TARGET,
        "target_met": met,
        "median_aif_s": med_aif,
        "median_plain_s": med_plain,
        "cpu_ratio": round(cpu_ratio, 3),
        "median_aif_cpu_s": med["aif", "cpu"],
        "median_plain_cpu_s": med["plain", "cpu"],
        "rounds": [
            {
                "aif_s": a["wall"],
                "plain_s": p["wall"],
                "ratio": a["wall"] / p["wall"],
                "aif_cpu_s": a["cpu"],
                "plain_cpu_s": p["cpu"],
            }
            for a, p in zip(aif, plain, strict=True)
        ],
        "accuracy": acc,
        "accuracies_similar": similar,
        "train_s": train,
        "epochs": args.epochs,
        "repetitions": args.repetitions,
        "omp_wait_policy": args.omp_wait_policy,
        "quick": args.quick,
        "machine": m,
    }


def print_breakdown(aif: dict[str, float], plain: dict[str, float]) -> None:
    print("\nwhere the time goes (s): one instrumented aif run, the median plain run")
    print(f"{'aif phase':<42}{'aif':>7}{'plain':>8}{'extra':>8}   plain phase")
    for name, seconds in aif.items():
        other = PAIRS.get(name)
        if name.startswith(" "):
            print(f"{name:<42}{seconds:7.2f}")
        elif other is None:
            print(f"{name:<42}{seconds:7.2f}{'':>8}{seconds:8.2f}   (none)")
        else:
            theirs = plain[other]
            print(f"{name:<42}{seconds:7.2f}{theirs:8.2f}{seconds - theirs:8.2f}   {other}")


# --------------------------------------------------------------------------- main


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 draw, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed runs per side (3)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the experiment's")
    parser.add_argument(
        "--omp-wait-policy",
        choices=["passive", "active", "inherit"],
        default="passive",
        help="OMP_WAIT_POLICY for both sides (inherit: leave the environment as it is)",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first runs")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the instrumented run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--events-of", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.events_of:
        return events_child(args.events_of, args.state_dir)

    shipped = load_experiment()
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    args.epochs = (
        args.epochs
        if args.epochs is not None
        else (2 if args.quick else int(shipped["training"]["epochs"]))
    )
    args.repetitions = 1 if args.quick else int(shipped["inference"]["repetitions"])
    if args.rounds < 1 or args.epochs < 1:
        parser.error("--rounds and --epochs must be at least 1")
    env = environment(args.omp_wait_policy)
    env_note = (
        "environment as is"
        if args.omp_wait_policy == "inherit"
        else f"OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}"
    )
    started = time.perf_counter()
    temp = Path(tempfile.mkdtemp(prefix="aif-overhead-"))
    try:
        workflow = prepare(temp / "workflow", args.epochs, args.repetitions)
        if not (args.no_warmup or args.quick):
            print("  warm-up: one untimed run of each side ...", file=sys.stderr, flush=True)
            run_aif(prepare(temp / "warm", 1, 1), temp / "warm-aif", env)
            run_plain(1, 1, temp / "warm-plain", env)
        runs: dict[str, list[dict[str, Any]]] = {"aif": [], "plain": []}
        for i in range(1, args.rounds + 1):
            print(f"  round {i}/{args.rounds}: aif ...", file=sys.stderr, flush=True)
            runs["aif"].append(run_aif(workflow, temp / f"aif-{i}", env))
            print(f"  round {i}/{args.rounds}: plain ...", file=sys.stderr, flush=True)
            plain = run_plain(args.epochs, args.repetitions, temp / f"plain-{i}", env)
            runs["plain"].append(plain)
        phases: dict[str, float] | None = None
        if not args.no_breakdown:
            print("  instrumented aif run for the breakdown ...", file=sys.stderr, flush=True)
            phases = aif_phases(workflow, temp / "events", env)
        summary = report(runs, args, env_note)
        if phases is not None:
            median_plain = sorted(runs["plain"], key=lambda r: r["wall"])[len(runs["plain"]) // 2]
            plain_split = plain_phases(median_plain)
            print_breakdown(phases, plain_split)
            summary["breakdown"] = {"aif": phases, "plain": plain_split}
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
