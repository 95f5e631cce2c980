"""MVM throughput through the chip protocol against the same tile in-process.

Run: ``python -m benchmarks.chip [--quick] [--rounds N]``

Both sides multiply the same inputs by the same programmed 256x256 tile of the same
emulated chip (``aif.aims.analog.imc_chip.tiles.Chip``, PCM noise on, seed 0), so the
physics costs the same; what differs is the path:

* in-process: ``chip.mvm(0, x)`` called in a loop, the ``Chip`` living in this process.
* protocol: ``ChipClient.mvm(0, x)`` (``aif.aims.analog.imc_chip.client``) over TCP
  loopback to the emulator running as its own process
  (``python -m aif.aims.analog.imc_chip.emulator``), one request in flight at a time,
  as the ``imc_chip`` AIM drives it: encode, send, the emulator's decode, the same
  ``Chip.mvm``, its encode, receive, decode.

For batch sizes 1, 32 and 512 (vectors per MVM request) each round times a fixed
number of MVMs on each side; the rounds alternate which side goes first, after one
untimed warm-up. The figure is the median time per MVM over the rounds.

Threads: by default both sides run torch on one thread (``--threads 1``: this process
calls ``torch.set_num_threads``, the emulator gets ``OMP_NUM_THREADS``). The client and
the emulator share the machine's cores, and on a 2-core box idle OpenMP workers of one
process spin against the other's (batch-1 MVMs measured at 8 ms instead of 0.1 ms),
which would measure the scheduler, not the protocol. ``--threads 0`` keeps torch's
defaults on both sides.

The last line printed is one JSON object; ``ratios`` maps each batch size to (median
time per MVM through the protocol) / (median time per MVM in-process): 1.0 would be a
free protocol; the excess is the price of a chip behind a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aihwkit
import numpy as np
import torch

from aif.aims.analog.imc_chip.client import ChipClient
from aif.aims.analog.imc_chip.config import ChipConfig
from aif.aims.analog.imc_chip.tiles import Chip
from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 32, 512)
SIZE = 256
SEED = 0
CALLS = {1: 2000, 32: 1000, 512: 200}  # MVMs per side per round (~0.1-0.5 s each)
BANNER = "aif chip emulator listening on "


def start_emulator(threads: int) -> tuple[subprocess.Popen[str], str]:
    """The emulator as its own process, with the same chip the in-process side builds."""
    command = [
        sys.executable,
        "-m",
        "aif.aims.analog.imc_chip.emulator",
        "--listen",
        "tcp://127.0.0.1:0",
        "--seed",
        str(SEED),
        "--tiles",
        "1",
        "--rows",
        str(SIZE),
        "--cols",
        str(SIZE),
    ]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith(BANNER):
        process.kill()
        raise SystemExit(f"the emulator did not start: first line {line!r}")
    return process, line[len(BANNER) :]


def stop_emulator(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    if process.stdout is not None:
        process.stdout.close()
    return code


def time_in_process(chip: Chip, x: np.ndarray, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        chip.mvm(0, x)
    return (time.perf_counter() - start) / calls


async def time_protocol(client: ChipClient, x: np.ndarray, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await client.mvm(0, x)
    return (time.perf_counter() - start) / calls


async def measure(address: str, rounds: int, scale: float) -> dict[int, dict[str, list[float]]]:
    rng = np.random.default_rng(SEED)
    weights = rng.uniform(-1, 1, (SIZE, SIZE)).astype(np.float32)
    chip = Chip(ChipConfig(tiles=1, rows=SIZE, cols=SIZE, seed=SEED))
    chip.program(0, weights)
    samples: dict[int, dict[str, list[float]]] = {}
    client = await ChipClient.connect(address, timeout=60.0)
    try:
        await client.program(0, weights)
        for batch in BATCHES:
            x = rng.uniform(-1, 1, (batch, SIZE)).astype(np.float32)
            calls = max(5, int(CALLS[batch] * scale))
            local = chip.mvm(0, x)
            remote = await client.mvm(0, x)
            assert local.shape == remote.shape == (batch, SIZE)
            time_in_process(chip, x, max(2, calls // 10))  # warm-up
            await time_protocol(client, x, max(2, calls // 10))
            got: dict[str, list[float]] = {"in_process": [], "protocol": []}
            for r in range(rounds):
                if r % 2 == 0:
                    got["in_process"].append(time_in_process(chip, x, calls))
                    got["protocol"].append(await time_protocol(client, x, calls))
                else:
                    got["protocol"].append(await time_protocol(client, x, calls))
                    got["in_process"].append(time_in_process(chip, x, calls))
            samples[batch] = got
    finally:
        await client.close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per batch size (7)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads on each side; 0 = torch's default"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 7)
    scale = 0.2 if args.quick else 1.0

    process, address = start_emulator(args.threads)
    try:
        samples = asyncio.run(measure(address, rounds, scale))
    finally:
        code = stop_emulator(process)
    if code != 0:
        print(f"warning: the emulator exited with {code}", file=sys.stderr)

    print(f"MVM on a {SIZE}x{SIZE} tile: in-process Chip vs ChipClient over TCP loopback")
    print(f"{'batch':>6} {'in-process':>14} {'protocol':>14} {'ratio':>7} {'protocol vec/s':>16}")
    ratios: dict[str, float] = {}
    medians: dict[str, dict[str, float]] = {}
    for batch, got in samples.items():
        local = statistics.median(got["in_process"])
        remote = statistics.median(got["protocol"])
        ratios[str(batch)] = round(remote / local, 3)
        medians[str(batch)] = {"in_process_us": local * 1e6, "protocol_us": remote * 1e6}
        print(
            f"{batch:>6} {local * 1e6:>11.1f} us {remote * 1e6:>11.1f} us "
            f"{remote / local:>7.2f} {batch / remote:>16,.0f}"
        )
    result: dict[str, Any] = {
        "benchmark": "chip",
        "tile": f"{SIZE}x{SIZE}",
        "ratios": ratios,
        "ratio": "median time per MVM through the protocol / in-process",
        "medians": medians,
        "rounds": {
            str(b): {k: [v * 1e6 for v in vs] for k, vs in got.items()}
            for b, got in samples.items()
        },
        "calls_per_round": {str(b): max(5, int(CALLS[b] * scale)) for b in BATCHES},
        "machine": describe(
            torch=torch.__version__,
            aihwkit=aihwkit.__version__,
            numpy=np.__version__,
            torch_threads=torch.get_num_threads(),
            emulator_threads=args.threads or "default",
        ),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
