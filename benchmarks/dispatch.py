"""Trivial jobs through the controller daemon against raw pyzmq request/reply.

Run: ``python -m benchmarks.dispatch [--quick] [--no-process]``

A *trivial job* is a workflow ``experiment-source -> analog-validator ->
analog-simulator`` on about the smallest experiment the validator accepts: a 4-to-2
``Linear`` on ``TorchInferenceRPUConfig`` tiles, 64 synthetic 2x2 samples, one epoch
of one batch, no drift inference. Its compute takes milliseconds, so what is measured
is aif's dispatch: submit, queue, AIM start-up and wiring, completion, reaping, and
the state database at every step.

* **daemon**: a real ``python -m aif controller start --instances cpu=2`` process on a
  fresh state directory, driven by ``aif.daemon.client.Client``. After one warm-up
  job (reported as *cold first job*: it imports torch and aihwkit):

  - *latency*: with the daemon idle, one job submitted and awaited, K times (20,
    ``--quick`` 5): ``started - submitted`` (the daemon's own timestamps; ``started``
    is when it hands the job to an instance, ``submitted`` when the checked job is
    stored), submit to the job's ``running`` event (every AIM up and wired),
    ``ended - submitted``, and the ``submit`` call as the client sees it;
  - *throughput*: N jobs submitted at once (50, quick 10), all awaited; jobs/s =
    N / (last ``ended`` - first ``submitted``).

  With the simulator ``placement: inproc`` (the daemon imports torch once) and, unless
  ``--no-process``, ``placement: process`` (each job starts a Python process that
  imports torch and aihwkit; K 5 / quick 2, N 10 / quick 4).
* **embedded**: the inproc workflow through an ``aif.Controller`` in this process
  (``launch`` + ``wait_run``), one job after another, alternating with the daemon's
  latency jobs: the same work without daemon, database and User API.
* **baseline**: raw pyzmq over ipc, a REP socket in another process answering each
  3-byte request with 2 bytes, measured the same two ways: N requests sent at once
  from a DEALER and all replies awaited (median of 20 rounds), and single REQ round
  trips (500, quick 100). It runs before and after the aif part; samples are pooled.

The last line printed is one JSON object with every number and the ratios (aif jobs/s
over zmq round trips/s, aif latency over zmq round-trip latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import zmq

from aif.controller.controller import Controller
from aif.controller.run import RunState
from aif.daemon.client import Client, read_daemon_file
from aif.daemon.records import JobRecord, JobState
from aif.workflow import load_workflow, resolve
from benchmarks.machine import describe, rounded

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = """\
name: trivial
dataset: {name: synthetic, classes: 2, samples: 64, image_size: 2, batch_size: 64}
model: {convert: all, layers: [Flatten, {type: Linear, out_features: 2}]}
rpu: TorchInferenceRPUConfig
training: {epochs: 1}
"""
WORKFLOW = """\
name: dispatch-{placement}
aims:
  experiments: {{type: experiment-source, params: {{files: [trivial.yml]}}}}
  validator: {{type: analog-validator}}
  simulator: {{type: analog-simulator, placement: {placement}, params: {{device: cpu}}}}
connections:
  - experiments.experiments -> validator.experiments
  - validator.jobs -> simulator.jobs
outputs: [simulator.results]
"""
REP_SERVER = """\
import sys, zmq
sock = zmq.Context().socket(zmq.REP)
sock.bind(sys.argv[1])
print("ready", flush=True)
while sock.recv() != b"end":
    sock.send(b"ok")
sock.send(b"ok")
"""
LIVE = [s for s in JobState if not s.final]
FINAL = [s for s in JobState if s.final]
LATENCY_ROWS = {
    "submit_rpc": "submit call, client side",
    "submit_to_start": "submit -> start (dispatched)",
    "submit_to_running": "submit -> running (AIMs up)",
    "submit_to_end": "submit -> end",
}


def stats(samples: list[float]) -> dict[str, float]:
    """Median and p90 (nearest rank) of seconds, in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1e3, "p90_ms": p90 * 1e3, "n": len(ordered)}


# --------------------------------------------------------------------------- the daemon


class Daemon:
    """``aif controller start`` in a child process; ``stop`` drains it with SIGTERM."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir, self.log = state_dir, state_dir.parent / "daemon.log"
        command = [sys.executable, "-m", "aif", "controller", "start", "--instances", "cpu=2"]
        # what it measures is placement as written: inproc AIMs in the daemon itself
        command += ["--inproc", "allow"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, "--state-dir", str(state_dir)],
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while (info := read_daemon_file(state_dir)) is None or info.get("pid") != self.proc.pid:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                self.fail("the daemon did not start")
            time.sleep(0.05)

    def fail(self, why: str) -> NoReturn:
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"{why}; daemon log ({self.log}):\n{tail}")

    def stop(self) -> float:
        """SIGTERM and wait; seconds it took to drain and exit."""
        start = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return time.perf_counter() - start

    def wait_all(self, client: Client, ids: list[str], poll: float) -> list[Ended]:
        """Poll until none of ``ids`` is unfinished; their records, each checked."""
        deadline, wanted = time.monotonic() + 600, set(ids)
        while wanted & {j.id for j in client.jobs(LIVE)}:
            if time.monotonic() > deadline:
                self.fail(f"jobs still unfinished after 600 s, e.g. {min(wanted)}")
            time.sleep(poll)
        ended = {j.id: j for j in client.jobs(FINAL) if j.id in wanted}
        out: dict[str, Ended] = {}
        for record in ended.values():
            result = record.result or {}
            sim = result.get("results", {}).get("simulator", {}).get("trivial", {})
            succeeded = record.state is JobState.SUCCEEDED and sim.get("status") == "completed"
            if not succeeded or record.started is None or record.ended is None:
                why = f"{record.state} {record.detail!r}, simulator result {sim}"
                self.fail(f"job {record.id} did not run its experiment: {why}")
            out[record.id] = Ended(record, record.submitted, record.started, record.ended)
        return [out[i] for i in ids]


@dataclass(frozen=True)
class Ended:
    """A job that ran its experiment, and its times."""

    record: JobRecord
    submitted: float
    started: float
    ended: float


def one_job(daemon: Daemon, client: Client, workflow: Path, out: dict[str, list[float]]) -> None:
    """One job through the idle daemon; its latencies appended to ``out``."""
    t0 = time.perf_counter()
    job = client.submit(workflow).id
    out["submit_rpc"].append(time.perf_counter() - t0)
    record = daemon.wait_all(client, [job], 0.02)[0]
    submitted = record.submitted
    running = (e.time for e in client.logs(job) if e.data.get("job") == "running")
    out["submit_to_start"].append(record.started - submitted)
    out["submit_to_running"].append(next(running) - submitted)
    out["submit_to_end"].append(record.ended - submitted)


def throughput(daemon: Daemon, client: Client, workflow: Path, n: int) -> dict[str, Any]:
    ids = [client.submit(workflow).id for _ in range(n)]
    records = daemon.wait_all(client, ids, 0.05)
    seconds = max(r.ended for r in records) - min(r.submitted for r in records)
    return {"jobs": n, "seconds": seconds, "jobs_per_s": n / seconds}


async def embedded_job(controller: Controller, workflow: Path) -> float:
    """The workflow through the Controller in this process: seconds from launch to end."""
    t0 = time.perf_counter()
    run = await controller.launch(resolve(load_workflow(workflow)))
    result = await controller.wait_run(run)
    controller.forget(run)
    sim = result.results.get("simulator", {}).get("trivial", {})
    if result.state is not RunState.SUCCEEDED or sim.get("status") != "completed":
        raise SystemExit(f"embedded run failed: {result.state.value}: {result.error}")
    return time.perf_counter() - t0


async def measure(folder: Path, sizes: dict[str, int], process: bool) -> dict[str, Any]:
    """Each placement through the daemon; the embedded controller beside inproc."""
    daemon = Daemon(folder / "state")
    out: dict[str, Any] = {}
    try:
        with Client(state_dir=daemon.state_dir, timeout=60) as client:
            async with Controller(folder / "embedded-state") as controller:
                for placement in ["inproc", "process"] if process else ["inproc"]:
                    print(f"  daemon, simulator {placement} ...", file=sys.stderr, flush=True)
                    workflow, inproc = folder / f"dispatch-{placement}.yaml", placement == "inproc"
                    k, n = (sizes["k"], sizes["n"]) if inproc else (sizes["kp"], sizes["np"])
                    first = daemon.wait_all(client, [client.submit(workflow).id], 0.02)[0]
                    if inproc:
                        await embedded_job(controller, workflow)  # its torch import
                    samples: dict[str, list[float]] = defaultdict(list)
                    for _ in range(k):  # daemon and embedded alternate
                        one_job(daemon, client, workflow, samples)
                        if inproc:
                            samples["embedded"].append(await embedded_job(controller, workflow))
                        time.sleep(0.05)  # the daemon's events flushed, idle again
                    if inproc:
                        seconds = samples.pop("embedded")
                        out["embedded"] = {"jobs_per_s": k / sum(seconds), "run": stats(seconds)}
                    out[placement] = {
                        "cold_first_job_s": first.ended - first.submitted,
                        "latency": {key: stats(v) for key, v in samples.items()},
                        "throughput": throughput(daemon, client, workflow, n),
                    }
    finally:
        out["drain_s"] = daemon.stop()
    if daemon.proc.returncode != 0:
        daemon.fail(f"the daemon exited {daemon.proc.returncode}")
    return out


# --------------------------------------------------------------------------- the baseline


def zmq_baseline(folder: Path, n: int, rounds: int, k: int) -> dict[str, list[float]]:
    """Round-trip rates (N at once) and single round-trip times against a REP process."""
    address = f"ipc://{folder}/rep-{os.getpid()}"
    server = subprocess.Popen(
        [sys.executable, "-c", REP_SERVER, address], stdout=subprocess.PIPE, text=True
    )
    ctx = zmq.Context()
    req, dealer = ctx.socket(zmq.REQ), ctx.socket(zmq.DEALER)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the zmq REP server did not start")
        for sock in (req, dealer):
            sock.linger = 0
            sock.connect(address)
        rates, latency = [], []
        for i in range(k + 20):  # the first 20: warm-up
            t0 = time.perf_counter()
            req.send(b"job")
            req.recv()
            if i >= 20:
                latency.append(time.perf_counter() - t0)
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                dealer.send_multipart([b"", b"job"])
            for _ in range(n):
                dealer.recv_multipart()
            rates.append(n / (time.perf_counter() - t0))
        req.send(b"end")
        req.recv()
        server.wait(10)
        return {"rates": rates, "latency": latency}
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
        req.close(0)
        dealer.close(0)
        ctx.term()


# --------------------------------------------------------------------------- report


def report(results: dict[str, Any]) -> dict[str, Any]:
    zq, d, m = results["zmq"], results["daemon"], results["machine"]
    zrate, zlat = zq["round_trips_per_s"], zq["round_trip"]["median_ms"]
    places = [p for p in ("inproc", "process") if p in d]
    print(f"\ntrivial jobs: aif daemon vs raw pyzmq REQ/REP ({m['cpu']}, {m['nproc']} cores)")
    print(f"\n{'throughput':<46}{'per s':>10}{'÷ zmq':>10}")
    rates = [("zmq round trips, N at once", zrate)]
    for p in places:
        t = d[p]["throughput"]
        rates.append((f"daemon, {t['jobs']} jobs at once, {p}", t["jobs_per_s"]))
    rates.append(("embedded Controller, sequential, inproc", d["embedded"]["jobs_per_s"]))
    for label, rate in rates:
        print(f"  {label:<44}{rate:10.2f}{rate / zrate:10.2e}")
    print(f"\n{'latency (ms)':<46}{'median':>10}{'p90':>10}{'÷ zmq':>10}")
    rows = [("zmq round trip", zq["round_trip"])]
    for p in places:
        rows += [
            (f"daemon {p}: {text}", d[p]["latency"][key]) for key, text in LATENCY_ROWS.items()
        ]
        cold = d[p]["cold_first_job_s"] * 1e3
        rows.append((f"daemon {p}: cold first job, submit -> end", {"median_ms": cold}))
    rows.append(("embedded Controller: launch -> end, inproc", d["embedded"]["run"]))
    for label, s in rows:
        p90 = f"{s['p90_ms']:10.3f}" if "p90_ms" in s else f"{'':10}"
        print(f"  {label:<44}{s['median_ms']:10.3f}{p90}{s['median_ms'] / zlat:10.1f}")
    print(f"\ndaemon drain and exit on SIGTERM: {d['drain_s']:.2f} s")
    ratios = {}
    for p in places:
        suffix = "" if p == "inproc" else "_process"
        ratios[f"throughput_ratio{suffix}"] = d[p]["throughput"]["jobs_per_s"] / zrate
        for key in ("submit_to_start", "submit_to_end"):
            ratios[f"latency_ratio_{key}{suffix}"] = d[p]["latency"][key]["median_ms"] / zlat
    end = d["inproc"]["latency"]["submit_to_end"]["median_ms"]
    ratios["daemon_over_embedded_end"] = end / d["embedded"]["run"]["median_ms"]
    return {**ratios, **results}


def main(quick: bool, process: bool) -> dict[str, Any]:
    sizes = dict(n=10, k=5, np=4, kp=2) if quick else dict(n=50, k=20, np=10, kp=5)
    rounds, k_zmq = 20, 100 if quick else 500
    folder = Path(tempfile.mkdtemp(prefix="aifd-"))
    try:
        (folder / "trivial.yml").write_text(EXPERIMENT, encoding="utf-8")
        for placement in ("inproc", "process"):
            text = WORKFLOW.format(placement=placement)
            (folder / f"dispatch-{placement}.yaml").write_text(text, encoding="utf-8")
        print("  zmq baseline ...", file=sys.stderr, flush=True)
        before = zmq_baseline(folder, sizes["n"], rounds, k_zmq)
        daemon = asyncio.run(measure(folder, sizes, process))
        print("  zmq baseline again ...", file=sys.stderr, flush=True)
        after = zmq_baseline(folder, sizes["n"], rounds, k_zmq)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    zq = {
        "round_trips_per_s": statistics.median(before["rates"] + after["rates"]),
        "round_trip": stats(before["latency"] + after["latency"]),
    }
    machine = describe(pyzmq=zmq.__version__, libzmq=zmq.zmq_version())
    return report({"machine": machine, "quick": quick, "sizes": sizes, "zmq": zq, "daemon": daemon})


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dispatch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer jobs (about a minute)")
    parser.add_argument("--no-process", action="store_true", help="skip placement: process")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary = main(args.quick, not args.no_process)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(rounded(summary), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
