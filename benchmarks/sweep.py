"""A sweep of small experiments: a warm daemon against plain aihwkit scripts.

Run: ``python -m benchmarks.sweep [--quick] [--experiments N] [--total-jobs N]``

Twenty small experiments (``--experiments``), each a tiny analog MLP (64-32-10, every
layer on an ``InferenceRPUConfig`` tile with output noise 0.02) trained for two epochs
on scikit-learn's digits in batches of 16 with ``AnalogSGD`` (each its own learning
rate and seed), then tested: about 0.2 s of training each. Three ways to run them:

* aif: a daemon (``aif controller start --instances cpu=1,validation=1x4``) with a
  warm worker, already warm (one untimed job first); each experiment is one submitted
  job, a workflow of experiment source, validator and simulator (each a fresh process
  forked by the warm worker, which imported torch and aihwkit once) and reporter (no
  plots). Timed from the first submission to the last
  job's end; one CPU instance, so the jobs run one after another like the baselines.
* scripts: each experiment a fresh ``python -m benchmarks.sweep --plain-one I``, one
  after another, as a researcher's shell loop over a plain aihwkit script would run
  them: every one pays interpreter start and the imports of torch and aihwkit.
* one process: ``python -m benchmarks.sweep --plain-loop N``, which imports once and
  loops over the experiments (its whole wall time; the loop alone is also reported).

Every side runs with ``OMP_WAIT_POLICY=PASSIVE`` unless ``--omp-wait-policy inherit``
(see ``benchmarks/overhead.py`` for why). After the sweep, the daemon runs more of the
same jobs until ``--total-jobs`` (50) have gone through its warm worker, and the
worker's resident memory after its 5th and its last job, and the peak of the simulator
it forked for each (as the worker reports them, in the daemon's log), show whether
either grows; the daemon runs with ``--worker-jobs`` high enough that one worker forks
them all.

The last line printed is one JSON object: ``speedup_vs_scripts`` (scripts' wall time /
aif's), ``ratio_vs_one_process`` (aif's / the one process's), the worker's memory
(``worker_rss_mib_after_5``, ``worker_rss_mib_after_50``), every time measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe, rounded

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, BATCH, EPOCHS, OUT_NOISE, TEST_FRACTION = 32, 16, 2, 0.02, 0.25


def learning_rate(i: int) -> float:
    """The sweep's axis: twenty learning rates from 0.02 to 0.4."""
    return round(0.02 * (1 + i % 20), 3)


def experiment(i: int) -> dict[str, Any]:
    """Experiment ``i`` as aif's experiment YAML (a mapping)."""
    return {
        "name": f"sweep-{i:02d}",
        "dataset": {"name": "digits", "batch_size": BATCH, "normalize": "unit"},
        "model": {
            "convert": "all",
            "layers": [
                "Flatten",
                {"type": "Linear", "out_features": HIDDEN},
                "ReLU",
                {"type": "Linear", "out_features": 10},
            ],
        },
        "rpu": {"config": "InferenceRPUConfig", "forward": {"out_noise": OUT_NOISE}},
        "training": {
            "epochs": EPOCHS,
            "optimizer": {"name": "AnalogSGD", "lr": learning_rate(i)},
            "seed": i,
        },
    }


def workflow(i: int, results: Path) -> str:
    """The job of experiment ``i``: source, validator, simulator (warm worker), reporter."""
    return json.dumps(
        {
            "name": f"sweep-{i:02d}",
            "aims": {
                "experiments": {
                    "type": "experiment-source",
                    "params": {"experiments": [experiment(i)]},
                },
                "validator": {"type": "analog-validator"},
                "simulator": {"type": "analog-simulator", "placement": "process"},
                "reporter": {
                    "type": "analog-reporter",
                    "params": {"plots": False, "folder": str(results / f"sweep-{i:02d}")},
                },
            },
            "connections": [
                "experiments.experiments -> validator.experiments",
                "validator.jobs -> simulator.jobs",
                "validator.rejections -> reporter.rejections",
                "simulator.metrics -> reporter.metrics",
                "simulator.results -> reporter.results",
            ],
        },
        indent=1,
    )


# -- the plain side: what one would write with aihwkit alone -------------------------------


def plain_experiment(i: int, data: Any) -> dict[str, float]:
    """Train and test experiment ``i`` with aihwkit alone; accuracy and seconds."""
    import numpy as np
    import torch
    from aihwkit.nn import AnalogLinear, AnalogSequential
    from aihwkit.optim import AnalogSGD
    from aihwkit.simulator.configs import InferenceRPUConfig

    started = time.perf_counter()
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(i)
    rpu = InferenceRPUConfig()
    rpu.forward.out_noise = OUT_NOISE
    model = AnalogSequential(
        torch.nn.Flatten(),
        AnalogLinear(64, HIDDEN, rpu_config=rpu),
        torch.nn.ReLU(),
        AnalogLinear(HIDDEN, 10, rpu_config=rpu),
    )
    optimizer = AnalogSGD(model.parameters(), lr=learning_rate(i))
    optimizer.regroup_param_groups(model)
    model.train()
    for epoch in range(1, EPOCHS + 1):
        order = torch.from_numpy(np.random.default_rng([i, epoch]).permutation(len(y_train)))
        for lo in range(0, len(order), BATCH):
            index = order[lo : lo + BATCH]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[index]), y_train[index])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    return {"accuracy": accuracy, "seconds": time.perf_counter() - started}


def plain_data() -> Any:
    """Digits as (N, 1, 8, 8) in [0, 1], split 75/25 by a seeded permutation."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.asarray(digits.images, dtype=np.float32)[:, None, :, :] / np.float32(16.0)
    y = np.asarray(digits.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(len(y) * (1 - TEST_FRACTION))
    tr, te = order[:cut], order[cut:]
    return (
        torch.from_numpy(x[tr]),
        torch.from_numpy(y[tr]),
        torch.from_numpy(x[te]),
        torch.from_numpy(y[te]),
    )


def plain_child(indices: list[int]) -> int:
    """``--plain-one`` / ``--plain-loop``: run experiments in this process; one JSON line."""
    data = plain_data()
    loop_started = time.perf_counter()
    runs = [plain_experiment(i, data) for i in indices]
    loop = time.perf_counter() - loop_started
    print(json.dumps({"runs": runs, "loop_seconds": loop}))
    return 0


def run_child(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """``python -m benchmarks.sweep ARGS`` in a fresh process; its JSON and wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"plain run {args} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


# -- the aif side ---------------------------------------------------------------------------


class Daemon:
    """A daemon on a temporary state directory, started as a user would."""

    def __init__(self, folder: Path, env: dict[str, str], worker_jobs: int) -> None:
        self.state = folder / "state"
        self.log = folder / "daemon.log"
        self.env = env
        self.worker_jobs = worker_jobs
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        from aif.daemon.client import read_daemon_file

        argv = [sys.executable, "-m", "aif", "controller", "start", "--state-dir", str(self.state)]
        argv += ["--instances", "cpu=1,validation=1x4", "--worker-jobs", str(self.worker_jobs)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = read_daemon_file(self.state)
            if info is not None and info.get("pid") == self.proc.pid:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.__exit__()
        raise SystemExit(f"the daemon did not start:\n{self.log.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def worker_rss(self, jobs: int) -> dict[int, tuple[float, float]]:
        """Job number -> the warm worker's resident MiB, and the peak MiB of the
        simulator it forked, once that job's AIMs ended (from the daemon's log; ``jobs``
        is how many went through, so the reports, in order, group by job)."""
        pattern = re.compile(
            r"warm worker (\d+): AIM '(\w+)' \(process \d+\) ended \(status \d+\), "
            r"peak ([\d.]+) MiB; the worker ([\d.]+) MiB"
        )
        reports = list(pattern.finditer(self.log.read_text(errors="replace")))
        if len({m.group(1) for m in reports}) > 1:
            print("note: more than one warm worker forked the jobs", file=sys.stderr)
        per_job = max(1, len(reports) // max(1, jobs))
        found: dict[int, tuple[float, float]] = {}
        peak = 0.0
        for n, match in enumerate(reports, start=1):
            if match.group(2) == "simulator":
                peak = float(match.group(3))
            if n % per_job == 0:
                found[n // per_job] = (float(match.group(4)), peak)
        return found


def submit_all(client: Any, folder: Path, indices: list[int]) -> tuple[list[Any], float]:
    """Submit one job per experiment, wait for all; their records and the wall seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, i in enumerate(indices):
        path = folder / f"job-{n:03d}.yaml"
        path.write_text(workflow(i, folder / "results"))
        paths.append(path)
    started = time.perf_counter()
    jobs = [client.submit(path).id for path in paths]
    records = [client.wait(job, timeout=600, poll=0.02) for job in jobs]
    wall = time.perf_counter() - started
    failed = [r for r in records if r.state.value != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} job(s) did not succeed, e.g. {failed[0].detail}")
    return records, wall


def accuracy_of(record: Any) -> float | None:
    results = (record.result or {}).get("results", {}).get("simulator", {})
    for value in results.values():
        if isinstance(value, dict) and "accuracy" in value:
            return float(value["accuracy"])
    return None


# -- the report -----------------------------------------------------------------------------


def table(rows: list[tuple[str, float, str]], n: int) -> None:
    print(f"{'':34} {'wall s':>8} {'per experiment':>15}  ratio")
    for name, wall, ratio in rows:
        print(f"{name:34} {wall:8.2f} {wall / n:15.3f}  {ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sweep",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="5 experiments, 10 jobs in all")
    parser.add_argument("--experiments", type=int, default=None, help="how many (20)")
    parser.add_argument(
        "--total-jobs", type=int, default=None, help="jobs through the worker for RSS (50)"
    )
    parser.add_argument("--omp-wait-policy", default="passive", help="passive or inherit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--plain-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plain-loop", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_one is not None:
        return plain_child([args.plain_one])
    if args.plain_loop is not None:
        return plain_child(list(range(args.plain_loop)))

    n = args.experiments or (5 if args.quick else 20)
    total = args.total_jobs or (10 if args.quick else 50)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    folder = Path(tempfile.mkdtemp(prefix="aif-sweep-"))
    try:
        # (a) a fresh process per experiment, one after another.
        scripts_wall = 0.0
        scripts_acc = []
        for i in range(n):
            out, wall = run_child(["--plain-one", str(i)], env)
            scripts_wall += wall
            scripts_acc.append(out["runs"][0]["accuracy"])
        # (b) one process over all of them.
        loop_out, loop_wall = run_child(["--plain-loop", str(n)], env)
        train_seconds = [r["seconds"] for r in loop_out["runs"]]

        from aif.daemon.client import Client

        with Daemon(folder, env, worker_jobs=4 * max(total, 1) + 10) as daemon:
            with Client(state_dir=daemon.state, timeout=30) as client:
                submit_all(client, folder / "warm-up", [0])  # the worker imports torch here
                records, aif_wall = submit_all(client, folder / "sweep", list(range(n)))
                extra = total - 1 - n
                if extra > 0:
                    submit_all(client, folder / "more", [i % 20 for i in range(extra)])
            rss = daemon.worker_rss(total)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}", file=sys.stderr)

    aif_acc = [accuracy_of(r) for r in records]
    speedup = scripts_wall / aif_wall
    ratio = aif_wall / loop_wall
    print(f"{n} experiments, ~{sum(train_seconds) / n:.2f} s of training each (one process)")
    table(
        [
            ("aif: jobs on a warm daemon", aif_wall, "1.00"),
            ("plain: a fresh script each", scripts_wall, f"aif {speedup:.2f}x faster"),
            ("plain: one process, all of them", loop_wall, f"aif / this = {ratio:.2f}"),
            ("  (its loop alone, no start-up)", loop_out["loop_seconds"], ""),
        ],
        n,
    )
    (after_5, host_5), (after_last, host_last) = (rss.get(k, (None, None)) for k in (5, total))
    if after_5 is not None and after_last is not None:
        print(
            f"warm worker resident memory after job 5: {after_5:.0f} MiB, after job {total}: "
            f"{after_last:.0f} MiB; its simulator fork's peak: {host_5:.0f} MiB and "
            f"{host_last:.0f} MiB"
        )
    known = [a for a in aif_acc if a is not None]
    summary = {
        "benchmark": "sweep",
        "experiments": n,
        "speedup_vs_scripts": speedup,
        "ratio_vs_one_process": ratio,
        "ratio_vs_one_process_loop_only": aif_wall / loop_out["loop_seconds"],
        "worker_rss_mib_after_5": after_5,
        f"worker_rss_mib_after_{total}": after_last,
        "simulator_peak_mib_job_5": host_5,
        f"simulator_peak_mib_job_{total}": host_last,
        "seconds": {
            "aif": aif_wall,
            "scripts": scripts_wall,
            "one_process": loop_wall,
            "one_process_loop": loop_out["loop_seconds"],
            "train_mean": sum(train_seconds) / n,
        },
        "accuracy_mean": {
            "aif": sum(known) / len(known) if known else None,
            "scripts": sum(scripts_acc) / n,
        },
        "machine": describe(omp_wait_policy=args.omp_wait_policy),
    }
    print(json.dumps(rounded(summary), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
