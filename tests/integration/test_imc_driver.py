"""The ``imc_chip`` AIM and its client against the real emulator process, over real TCP.

Workflows run through a real controller: a test-only source AIM trains a small digital
model on digits (tests/helpers/chip_aims.py) and sends it as a MODEL record; the chip AIM
runs in its own process and starts (or connects to) an emulator process. Faults are real
too: the emulator is killed or stopped mid-inference, or refuses a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import yaml

from aif import (
    ChipConnectionError,
    ChipError,
    Controller,
    ProtocolError,
    RunState,
    WorkflowRun,
)
from aif.aims.analog.imc_chip.client import ChipClient, parse_address
from aif.aims.analog.imc_chip.driver import ChipParams
from aif.aims.analog.imc_chip.messages import PROTOCOL_VERSION, Opcode
from aif.aims.analog.imc_chip.protocol import HEADER, MAGIC
from aif.communication.events import Event
from aif.errors import ConfigError
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration

DRIVER = "aif.aims.analog.imc_chip.driver:IMCChip"
DATASET = {"name": "digits", "batch_size": 64, "max_test": 300}
MLP = {
    "convert": "all",
    "layers": [
        "Flatten",
        {"type": "Linear", "out_features": 32},
        "ReLU",
        {"type": "Linear", "out_features": 10},
    ],
}
CNN = {
    "convert": "all",
    "layers": [
        {"type": "Conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        "ReLU",
        {"type": "MaxPool2d", "kernel_size": 2},
        "Flatten",
        {"type": "Linear", "out_features": 10},
    ],
}


def experiment(name: str, model: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "dataset": DATASET, "model": model, **fields}


def workflow(
    experiments: list[dict[str, Any]],
    chip: dict[str, Any] | None = None,
    chips: dict[str, dict[str, Any]] | None = None,
    **source: Any,
) -> Any:
    """Source -> one chip AIM per entry of ``chips`` (or ``chip``), results collected."""
    chips = chips or {"chip": chip or {}}
    aims: dict[str, Any] = {
        "source": {
            "type": "tests.helpers.chip_aims:ModelSource",
            "params": {"experiments": experiments, **source},
        },
    }
    for name, params in chips.items():
        aims[name] = {"type": DRIVER, "placement": "process", "params": params}
    text = yaml.safe_dump(
        {
            "name": "chip-test",
            "aims": aims,
            "connections": [f"source.models -> {name}.models" for name in chips],
            "outputs": [f"{name}.results" for name in chips],
        }
    )
    return resolve(load_workflow_text(text, "chip-test.yml"))


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for a reaper counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def until(run: WorkflowRun, predicate: Callable[[], bool]) -> None:
    """Wait for ``predicate``; a run that ends first fails the test with its error."""
    await wait_for(lambda: predicate() or run.state.ended)
    assert predicate(), f"the run ended first: {run.state.name}: {run.error}"


@contextlib.asynccontextmanager
async def chip_emulator(*options: str) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """An emulator process started by the test; yields it and its address."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aif.aims.analog.imc_chip.emulator",
            "--listen",
            "tcp://127.0.0.1:0",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith(b"aif chip emulator listening on tcp://"), line
        yield process, line.decode().split()[-1]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


# -- deploying on the emulator -----------------------------------------------------------


# training and deploying take 10-50 s on a busy 2-core machine: bounds against hangs only
@pytest.mark.timeout(300)
async def test_models_on_an_ideal_chip_match_their_digital_accuracy(tmp_path: Path) -> None:
    ideal = {"no_noise": True, "seed": 0, "tiles": 8}
    wf = workflow(
        [
            # the job asks for compensated outputs only: the chip honours that
            experiment(
                name,
                model,
                inference={"drift_times": ["1s", "1y"], "repetitions": 2, "compensation": "with"},
            )
            for name, model in (("mlp", MLP), ("cnn", CNN))
        ],
        chips={
            # exact converters: the chip does the digital model's arithmetic up to
            # float rounding, so at most one of the 300 test samples may flip
            "exact": {"emulator": {**ideal, "dac_bits": 0, "adc_bits": 0}},
            # the default 8-bit DAC and ADC round inputs and outputs: a few may flip
            "rounding": {"emulator": ideal},
        },
    )
    events: list[Event] = []
    async with Controller(tmp_path) as controller:
        controller.subscribe(events.append)
        result = await controller.run_workflow(wf, timeout=240)
    assert result.state is RunState.SUCCEEDED, result.error
    for chip, tolerance in (("exact", 1 / 300), ("rounding", 0.03)):
        records = {r["experiment"]: r for r in result.outputs[f"{chip}.results"]}
        for name in ("mlp", "cnn"):
            digital = result.results["source"][f"{name}:digital"]
            assert digital > 0.85  # the model learned something worth comparing
            record = records[name]
            assert record["status"] == "completed", record["error"]
            assert record["job"] == f"{name}@chip" and record["label"] == "(chip)"
            assert record["family"] == "imc-chip" and record["simulator"] == chip
            assert record["device"].startswith("tcp://127.0.0.1:")
            assert record["drift_times"] == [1.0, 31_536_000.0]
            assert record["accuracy"] == pytest.approx(digital, abs=tolerance), (chip, name)
            # an ideal chip does not drift: every time and repetition gives the same
            assert record["drift_mean_compensated"] == [record["accuracy"]] * 2
            assert record["drift_std_compensated"] == [0.0, 0.0]
            assert record["drift_mean"] == []
            summary = result.results[chip][f"{name}@chip"]
            assert summary["tiles"] == "2/8"
            assert summary["digital"] == pytest.approx(digital, abs=1e-4)
        assert result.results[chip]["jobs"] == 2
    exact_steps = [e.data for e in events if e.source == "exact" and "step" in e.data]
    assert [s["step"] for s in exact_steps] == [1, 2, 3, 4] * 2 and exact_steps[0]["total"] == 4
    started = [e.data for e in events if e.topic == "progress" and "emulator_pid" in e.data]
    assert len(started) == 2 and all("ideal" in s["name"] for s in started)
    assert all(gone(s["emulator_pid"]) for s in started)  # teardown stopped the emulators


# training and deploying take 10-50 s on a busy 2-core machine: bounds against hangs only
@pytest.mark.timeout(300)
async def test_a_noisy_chip_drifts_and_compensation_keeps_accuracy(tmp_path: Path) -> None:
    # raw and compensated outputs measured on the same programming and drift draws;
    # a second chip asked for raw outputs only reports only those
    emulator = {"seed": 0, "tiles": 8}
    wf = workflow(
        [experiment("noisy", MLP, inference={"drift_times": ["1s", "1d", "1y"], "repetitions": 3})],
        chips={
            "both": {"emulator": emulator, "compensation": "both"},
            "raw": {"emulator": emulator, "compensation": "without", "drift_times": ["1y"]},
        },
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=240)
    assert result.state is RunState.SUCCEEDED, result.error
    digital = result.results["source"]["noisy:digital"]
    [record] = result.outputs["both.results"]
    [raw_only] = result.outputs["raw.results"]
    assert record["status"] == raw_only["status"] == "completed"
    raw = record["drift_mean"]
    compensated = record["drift_mean_compensated"]
    assert len(raw) == len(compensated) == 3
    assert all(std >= 0 for std in record["drift_std"] + record["drift_std_compensated"])
    assert len(raw_only["drift_mean"]) == 1 and raw_only["drift_mean_compensated"] == []
    # noise costs a little at 1 s and no more than chance allows after a year; with
    # compensation a year of drift costs at most a few points
    assert 0.6 < raw[0] <= digital + 0.02
    assert 0.6 < compensated[2] <= digital + 0.02
    assert compensated[2] >= raw[2] - 0.02
    print(f"digital {digital:.4f} raw {raw} compensated {compensated}")


async def test_a_model_too_big_for_the_chip_fails_its_job_with_both_numbers(
    tmp_path: Path,
) -> None:
    wf = workflow(
        [
            experiment("big", MLP, inference={"drift_times": ["1s"], "repetitions": 1}),
            experiment(
                "small",
                {**MLP, "layers": ["Flatten", {"type": "Linear", "out_features": 10}]},
                inference={"drift_times": ["1s"], "repetitions": 1},
            ),
        ],
        {"emulator": {"no_noise": True, "tiles": 1}},
        steps=20,
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=240)
    assert result.state is RunState.SUCCEEDED, result.error
    big, small = result.outputs["chip.results"]
    assert big["status"] == "failed"
    assert "needs 2 tiles of 256x256" in big["error"]
    assert "has 1; use a chip with at least 2 tiles (emulator: tiles: 2)" in big["error"]
    assert small["status"] == "completed"  # the next job still runs


async def test_drift_past_the_emulators_clock_fails_its_job_before_programming(
    tmp_path: Path,
) -> None:
    # The longest drift a job may ask for, 1000 times: the whole clock of the emulator.
    longest = {"drift_times": ["1s", "1e10s"], "repetitions": 1000}
    wf = workflow(
        [
            experiment("all-of-it", MLP, inference=longest),
            experiment("too-late", MLP, inference={"drift_times": ["1h"], "repetitions": 2}),
        ],
        {"emulator": {"no_noise": True}},
        steps=5,
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=240)
    assert result.state is RunState.SUCCEEDED, result.error  # the chip AIM went on
    first, late = result.outputs["chip.results"]
    assert first["status"] == "completed"
    assert late["status"] == "failed"
    assert "needs 7200 s of chip time (2 repetitions x the longest drift time, 1h)" in late["error"]
    assert "the emulated chip's clock has 0 s left" in late["error"]
    assert "use fewer inference.repetitions or shorter drift_times" in late["error"]


async def test_a_record_that_does_not_fit_its_model_fails_its_job(tmp_path: Path) -> None:
    wf = workflow(
        [experiment("partial", MLP, inference={"drift_times": ["1s"], "repetitions": 1})],
        {"emulator": {"no_noise": True}},
        steps=5,
        drop=["3.bias"],
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=240)
    assert result.state is RunState.SUCCEEDED, result.error
    [record] = result.outputs["chip.results"]
    assert record["status"] == "failed"
    assert "names.3.bias: missing: the model needs a tensor of shape [10]" in record["error"]


async def test_suspend_pauses_the_chip_and_stop_reports_what_was_measured(
    tmp_path: Path,
) -> None:
    wf = workflow([experiment("paused", MLP, inference=LONG)], {"emulator": {"seed": 0}})
    measured: list[dict[str, Any]] = []
    emulator_pid: list[int] = []
    states: list[str] = []

    def on_event(event: Event) -> None:
        if event.topic == "progress" and "accuracy" in event.data:
            measured.append(event.data)
        if event.topic == "progress" and "emulator_pid" in event.data:
            emulator_pid.append(int(event.data["emulator_pid"]))
        if event.topic == "state" and event.source == "chip":
            states.append(str(event.data.get("state")))

    async with Controller(tmp_path) as controller:
        controller.subscribe(on_event)
        run = await controller.launch(wf)
        await until(run, lambda: len(measured) >= 2)
        await run.suspend()
        await until(run, lambda: "suspended" in states)
        await asyncio.sleep(0.3)  # in-flight progress events arrive
        paused_at = len(measured)
        await asyncio.sleep(0.5)
        assert len(measured) == paused_at  # suspended between two measurements
        await run.resume()
        await until(run, lambda: len(measured) > paused_at)
        await run.stop()
        result = await controller.wait_run(run, timeout=10)
    assert result.state is RunState.STOPPED, result.error
    [record] = result.outputs["chip.results"]
    assert record["status"] == "stopped"
    assert record["drift_times"] and len(record["drift_mean_compensated"]) == len(
        record["drift_times"]
    )
    assert 0.5 < record["accuracy"] <= 1.0
    assert gone(emulator_pid[0])


# -- faults that fail the workflow -------------------------------------------------------

LONG = {"drift_times": ["1s", "1h", "1d", "1y"], "repetitions": 1000}


async def test_the_emulator_killed_mid_inference_fails_the_run_within_seconds(
    tmp_path: Path,
) -> None:
    wf = workflow([experiment("victim", MLP, inference=LONG)], {"emulator": {"seed": 0}})
    started: list[dict[str, Any]] = []
    measured: list[dict[str, Any]] = []

    def on_event(event: Event) -> None:
        if event.topic == "progress" and "emulator_pid" in event.data:
            started.append(event.data)
        if event.topic == "progress" and "accuracy" in event.data:
            measured.append(event.data)

    async with Controller(tmp_path) as controller:
        controller.subscribe(on_event)
        run = await controller.launch(wf)
        await until(run, lambda: bool(measured))
        pid, address = started[0]["emulator_pid"], started[0]["chip"]
        os.kill(pid, signal.SIGKILL)
        result = await controller.wait_run(run, timeout=10)
    assert result.state is RunState.FAILED
    error = result.error or ""
    assert "AIM 'chip' failed: ChipConnectionError" in error
    assert f"lost the connection to the chip at {address}" in error
    assert "check that the chip (or emulator) is still running" in error
    assert f"the emulator (pid {pid}) killed by signal 9" in error
    [record] = result.outputs["chip.results"]
    assert record["status"] == "failed" and "ChipConnectionError" in record["error"]


async def test_the_emulator_ends_when_the_chip_aim_process_is_killed(tmp_path: Path) -> None:
    wf = workflow([experiment("orphan", MLP, inference=LONG)], {"emulator": {"seed": 0}})
    pids: dict[str, int] = {}

    def on_event(event: Event) -> None:
        if event.source == "chip" and "pid" in event.data:
            pids["aim"] = int(event.data["pid"])
        if event.topic == "progress" and "emulator_pid" in event.data:
            pids["emulator"] = int(event.data["emulator_pid"])

    async with Controller(tmp_path) as controller:
        controller.subscribe(on_event)
        run = await controller.launch(wf)
        await until(run, lambda: "aim" in pids and "emulator" in pids)
        os.kill(pids["aim"], signal.SIGKILL)  # no teardown runs: the kernel tells the child
        result = await controller.wait_run(run, timeout=10)
        await wait_for(lambda: gone(pids["emulator"]), timeout=10)
    assert result.state is RunState.FAILED


async def test_a_stalled_chip_fails_the_run_after_the_reply_timeout(tmp_path: Path) -> None:
    async with chip_emulator("--seed", "0") as (process, address):
        wf = workflow([experiment("stall", MLP, inference=LONG)], {"chip": address, "timeout": 1})
        measured: list[Event] = []
        async with Controller(tmp_path) as controller:
            controller.subscribe(lambda e: measured.append(e) if "accuracy" in e.data else None)
            run = await controller.launch(wf)
            await until(run, lambda: bool(measured))
            process.send_signal(signal.SIGSTOP)
            result = await controller.wait_run(run, timeout=10)
    assert result.state is RunState.FAILED
    error = result.error or ""
    assert "ChipConnectionError" in error
    assert f"the chip at {address} did not answer" in error and "within 1 s" in error


async def test_a_chip_error_reply_fails_the_run_with_the_chips_message(tmp_path: Path) -> None:
    wf = workflow(
        [experiment("refused", MLP, inference={"drift_times": ["1s"], "repetitions": 1})],
        {"emulator": {"no_noise": True, "max_batch": 16}, "batch": 64},
        steps=5,
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=240)
    assert result.state is RunState.FAILED
    error = result.error or ""
    assert "AIM 'chip' failed: ChipError" in error
    assert re.search(r"refused MVM on tile 0 \(\d+ vectors\): MVM request: batch", error)
    assert "status 6 TOO_LARGE" in error
    assert "lower this AIM's 'batch' parameter (now 64)" in error


async def test_an_unreachable_chip_fails_setup_naming_the_address(tmp_path: Path) -> None:
    async with chip_emulator() as (process, address):
        process.kill()
        process.wait(10)
        wf = workflow([experiment("nowhere", MLP)], {"chip": address, "timeout": 2})
        async with Controller(tmp_path) as controller:
            result = await controller.run_workflow(wf, timeout=30)
    assert result.state is RunState.FAILED
    assert f"cannot connect to the chip at {address}" in (result.error or "")


# -- the client alone --------------------------------------------------------------------


async def test_client_requests_and_error_replies_on_the_real_emulator() -> None:
    async with chip_emulator("--no-noise", "--tiles", "2", "--rows", "4", "--cols", "3") as (
        _,
        address,
    ):
        async with await ChipClient.connect(address, timeout=5) as chip:
            info = await chip.info()
            assert (info.tiles, info.rows, info.cols) == (2, 4, 3)
            weights = np.array([[1, 0, -1], [0.5, 0.5, 0], [0, 0, 0], [-1, 1, 0]], np.float32)
            assert (await chip.program(1, weights)).rows_used == 4
            outputs = await chip.mvm(1, np.array([[1, 1, 1], [0, 0, 1]], np.float32))
            np.testing.assert_allclose(outputs, [[0, 1, 0, 0], [-1, 0, 0, 0]], atol=0.1)
            read = await chip.read(1)
            np.testing.assert_allclose(read.g_plus - read.g_minus, weights * info.g_max, atol=0.5)
            assert await chip.wait(10.0) == pytest.approx(info.clock + 10.0)
            with pytest.raises(ChipError) as refused:
                await chip.mvm(0, np.zeros((1, 3), np.float32))
            assert refused.value.status == 5
            assert f"the chip at {address} refused MVM on tile 0 (1 vectors)" in str(refused.value)
            assert "NOT_PROGRAMMED" in str(refused.value)
            with pytest.raises(ChipError, match=r"refused PROGRAM of tile 7 \(4x3 weights\)"):
                await chip.program(7, weights)
            assert await chip.reset() == 2  # the connection still serves after refusals
        assert chip.closed
        with pytest.raises(ChipConnectionError, match="the connection is closed"):
            await chip.info()


async def test_client_connect_refused_and_bad_addresses() -> None:
    async with chip_emulator() as (process, address):
        process.kill()
        process.wait(10)
        with pytest.raises(ChipConnectionError, match=f"cannot connect to the chip at {address}"):
            await ChipClient.connect(address, timeout=2)
    with pytest.raises(ConfigError, match="is not tcp://HOST:PORT"):
        parse_address("127.0.0.1:5555")
    assert parse_address("tcp://[::1]:7") == ("::1", 7)


async def test_client_refuses_a_reply_with_the_wrong_request_id() -> None:
    """A peer on a real socket that answers out of step: the client must not trust it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = HEADER.unpack(await reader.readexactly(HEADER.size))
        await reader.readexactly(header[4])
        payload = b"\x00" * 8  # a WAIT reply (f64 clock)
        reply_id = header[3] + 41
        writer.write(HEADER.pack(MAGIC, PROTOCOL_VERSION, Opcode.WAIT | 0x80, reply_id, 8))
        writer.write(payload)
        await writer.drain()
        await reader.read()  # hold the connection until the client closes it
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        chip = await ChipClient.connect(f"tcp://127.0.0.1:{port}", timeout=2)
        with pytest.raises(ProtocolError, match=r"with request id 42; the replies are out of"):
            await chip.wait(1.0)
        with pytest.raises(ChipConnectionError, match="wrong request id"):
            await chip.wait(1.0)
        await chip.close()
    finally:
        server.close()
        await server.wait_closed()


# -- parameters ------------------------------------------------------------------------


def test_params_check_the_chip_address_and_emulator_options() -> None:
    assert ChipParams().chip == "emulate"
    params = ChipParams.model_validate(
        {"emulator": {"tiles": 4, "no_noise": True}, "drift_times": ["1s", 3600]}
    )
    assert params.drift_times == [1.0, 3600.0]
    assert params.emulator is not None
    assert params.emulator.arguments() == ["--tiles", "4", "--no-noise"]
    with pytest.raises(pydantic.ValidationError, match="is not tcp://HOST:PORT"):
        ChipParams.model_validate({"chip": "localhost:5555"})
    with pytest.raises(pydantic.ValidationError, match="only with chip: emulate"):
        ChipParams.model_validate({"chip": "tcp://127.0.0.1:5555", "emulator": {"tiles": 2}})
    with pytest.raises(pydantic.ValidationError, match="tiless"):
        ChipParams.model_validate({"emulator": {"tiless": 2}})
    with pytest.raises(pydantic.ValidationError, match="not a duration"):
        ChipParams.model_validate({"drift_times": ["1 fortnight"]})
    with pytest.raises(pydantic.ValidationError, match="'with', 'without' or 'both'"):
        ChipParams.model_validate({"compensation": True})
