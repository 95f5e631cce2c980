"""Plugging in a hardware AIM the way a third party does.

The example package ``examples/aif-int8-accelerator`` is pip-installed into this venv
for the session and used only as its users would: by its entry-point name, by its
class path, and from a remote host (``aif aim serve``, a real process started from a
folder where the package is not on the path) that hot-plugs into a waiting AIW over
tcp and leaves it, cleanly or not, while the AIW runs. ``aif run`` and ``aif aim
serve`` run as real commands, with real sockets on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aif import Controller, RunState, WorkflowError, WorkflowRun
from aif.communication.events import Event
from aif.controller.run import AIMState
from aif.workflow import export_metadata, load_workflow, load_workflow_text, resolve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "aif-int8-accelerator"
#: The `aif` command of this venv, as a user types it.
AIF = [str(Path(sys.executable).with_name("aif"))]
if not Path(AIF[0]).exists():
    AIF = [sys.executable, "-m", "aif.cli.main"]

W = [
    [0.50, -0.25, 0.10, 0.00, 0.80, -0.60, 0.30, 0.05],
    [-0.40, 0.90, -0.10, 0.20, 0.00, 0.15, -0.70, 0.35],
    [0.05, 0.05, 0.05, 0.05, -0.05, -0.05, -0.05, -0.05],
    [1.00, 0.00, -1.00, 0.50, -0.50, 0.25, -0.25, 0.75],
]


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example package installed into this venv (offline), removed at the end.

    Built from a copy, so the build leaves nothing in the repository. Yields the
    entry-point name it publishes.
    """
    source = tmp_path_factory.mktemp("plugin") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = [sys.executable, "-m", "pip"]
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    importlib.invalidate_caches()
    try:
        yield "int8-matmul"
    finally:
        subprocess.run(
            [*pip, "uninstall", "-y", "-q", "aif-int8-accelerator"],
            capture_output=True,
            timeout=180,
            check=False,
        )
        for module in [m for m in sys.modules if m.startswith("aif_int8_accelerator")]:
            del sys.modules[module]
        importlib.invalidate_caches()


def workflow(text: str):  # type: ignore[no-untyped-def]
    return resolve(load_workflow_text(text, "test.yml"))


def serve(
    aim_type: str, controller: str, name: str, cwd: Path, *extra: str, aif: list[str] = AIF
) -> subprocess.Popen[str]:
    """``aif aim serve`` as a user starts it, from a folder outside the repository."""
    return subprocess.Popen(
        [*aif, "aim", "serve", aim_type, "--controller", controller, "--name", name, *extra],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str]:
    """Wait for a process; its exit status and everything it printed."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (out or "") + (err or "")


async def hot_plugged(
    launch: asyncio.Task[WorkflowRun], host: subprocess.Popen[str]
) -> WorkflowRun:
    """The run, once the remote host registered; fails at once if the host exits first."""
    while not launch.done():
        if host.poll() is not None:
            launch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await launch
            status, printed = finish(host)
            raise AssertionError(f"the host exited ({status}) before the run started:\n{printed}")
        await asyncio.sleep(0.02)
    return await launch


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def check_products(xs: list[Any], ys: list[Any], reported: dict[str, Any]) -> None:
    """Each y is x @ W.T up to int8 rounding, and the AIM reported that error honestly."""
    assert len(xs) == len(ys) == reported["products"] > 0
    matrix = np.array(W, dtype=np.float64)
    errors = []
    for x, y in zip(xs, ys, strict=True):
        exact = np.asarray(x, dtype=np.float64) @ matrix.T
        assert y.dtype == np.float32 and y.shape == exact.shape
        errors.append(float(np.linalg.norm(y - exact) / np.linalg.norm(exact)))
    assert 0 < max(errors) < 0.02  # rounded to int8 (not float arithmetic), and close
    assert reported["max_error"] == pytest.approx(max(errors), rel=1e-4)
    assert reported["vectors"] == sum(np.asarray(x).shape[0] for x in xs)


# -- (a) by entry-point name and (b) by class path, through a real controller -----------


@pytest.mark.parametrize("placement", ["inproc", "process"])
async def test_the_entry_point_name_runs_in_a_real_controller(
    plugin: str, placement: str, tmp_path: Path
) -> None:
    wf = workflow(
        f"""
name: int8-ep
aims:
  gen: {{type: tensor-source, params: {{shape: [16, 8], count: 3, seed: 4}}}}
  acc: {{type: {plugin}, placement: {placement}, params: {{weights: {W}, max_error: 0.05}}}}
connections: [gen.out -> acc.x]
outputs: [gen.out, acc.y]
"""
    )
    async with Controller(tmp_path) as controller:
        run = await controller.launch(wf)
        capabilities = run.handles["acc"].ready.capabilities  # type: ignore[union-attr]
        result = await controller.wait_run(run, timeout=30)
    assert result.ok, result.error
    check_products(result.outputs["gen.out"], result.outputs["acc.y"], result.results["acc"])
    assert capabilities["weight_bits"] == 8 and capabilities["weights"] == [4, 8]
    acc = export_metadata(wf)["AIMs"]["acc"]  # MPAI-AIF metadata: a Hardware AIM
    assert acc["Identifier"]["Specification"]["AIM"] == plugin
    assert {p["Technology"] for p in acc["Ports"]} == {"Hardware"}


async def test_the_class_path_runs_in_a_child_process_and_reads_its_weights_file(
    plugin: str, tmp_path: Path
) -> None:
    np.save(tmp_path / "w.npy", np.array(W, dtype=np.float32))
    path = tmp_path / "int8.yml"
    path.write_text(
        """
name: int8-class-path
aims:
  gen: {type: tensor-source, params: {shape: [5, 8], count: 2, seed: 9}}
  acc:
    type: "aif_int8_accelerator.accelerator:Int8MatMul"
    placement: process
    params: {weights_file: w.npy}    # relative: read from this file's folder
connections: [gen.out -> acc.x]
outputs: [gen.out, acc.y]
"""
    )
    async with Controller(tmp_path / "state") as controller:
        result = await controller.run_workflow(resolve(load_workflow(path)), timeout=30)
    assert result.ok, result.error
    check_products(result.outputs["gen.out"], result.outputs["acc.y"], result.results["acc"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{}", "give the matrix exactly once: inline as 'weights' or as 'weights_file'"),
        ("{weights: [[1, 2], [3]]}", "a list of rows of equal length (got rows of lengths [1, 2])"),
        (
            "{weights: [[1, 2, 3]], cols: 2}",
            "'weights' of shape (1, 3) does not fit the 256x2 MAC array",
        ),
        ("{weights: [[1]], colour: red}", "colour"),
    ],
)
def test_bad_parameters_are_refused_before_the_run(plugin: str, params: str, message: str) -> None:
    text = f"name: bad\naims:\n  acc: {{type: {plugin}, params: {params}}}\n"
    with pytest.raises(WorkflowError) as caught:
        workflow(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("params", "shape", "message"),
    [
        (
            "{weights_file: missing.npy}",
            [2, 8],
            "weights_file 'missing.npy': cannot read",
        ),
        (f"{{weights: {W}}}", [2, 7], "input 'x': expected a tensor of shape (8,) or (batch, 8)"),
        (
            f"{{weights: {W}, max_error: 0.0001}}",
            [2, 8],
            "HardwareError in run: product 1: relative error",
        ),
    ],
)
async def test_device_errors_fail_the_run_naming_the_aim_and_the_fix(
    plugin: str, params: str, shape: list[int], message: str, tmp_path: Path
) -> None:
    wf = workflow(
        f"""
name: int8-errors
aims:
  gen: {{type: tensor-source, params: {{shape: {shape}, count: 1}}}}
  acc: {{type: {plugin}, params: {params}}}
connections: [gen.out -> acc.x]
"""
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=30)
    assert result.state is RunState.FAILED
    assert "AIM 'acc' failed" in (result.error or "")
    assert message in (result.error or "")


# -- (c) a remote host: aif aim serve, hot-plugged over tcp ------------------------------


def remote_workflow(plugin: str, source: str, sink: str, heartbeat: float = 5.0):  # type: ignore[no-untyped-def]
    return workflow(
        f"""
name: int8-remote
aims:
  gen: {source}
  acc:
    type: {plugin}
    placement: remote
    heartbeat_timeout: {heartbeat}
    params: {{weights: {W}}}
  sink: {sink}
connections: [gen.out -> acc.x, acc.y -> sink.in]
"""
    )


FINITE = "{type: tensor-source, params: {shape: [4, 8], count: 3}}"


@pytest.mark.parametrize("spelling", ["entry point", "class path"])
async def test_a_remote_host_hot_plugs_into_a_waiting_run_and_says_bye(
    plugin: str, spelling: str, tmp_path: Path
) -> None:
    served = plugin if spelling == "entry point" else "aif_int8_accelerator:Int8MatMul"
    wf = remote_workflow(plugin, FINITE, "{type: collect}")
    async with Controller(tmp_path / "state", tcp="tcp://127.0.0.1:*") as controller:
        launch = asyncio.create_task(controller.launch(wf))
        await asyncio.sleep(0.1)  # the run is waiting for its remote AIM
        assert not launch.done()
        proc = serve(served, controller.endpoints["tcp"], "acc", tmp_path)
        try:
            run = await hot_plugged(launch, proc)
            host = run.handles["acc"].launcher.description
            result = await controller.wait_run(run, timeout=30)
        finally:
            status, printed = finish(proc)
    assert result.ok, result.error
    assert result.results["acc"]["products"] == 3 and result.results["sink"]["received"] == 3
    assert host == f"remote host on {socket.gethostname()} (pid {proc.pid})"
    assert status == 0, printed
    assert "registered with run int8-remote-" in printed
    assert "deregistered (done)" in printed


async def test_a_remote_aim_that_finishes_leaves_while_the_run_goes_on(
    plugin: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    sink = f"{{type: 'tests.helpers.plugin_aims:GatedSink', params: {{gate: '{gate}'}}}}"
    wf = remote_workflow(plugin, FINITE, sink)
    async with Controller(tmp_path / "state", tcp="tcp://127.0.0.1:*") as controller:
        launch = asyncio.create_task(controller.launch(wf))
        proc = serve(plugin, controller.endpoints["tcp"], "acc", tmp_path)
        run = await hot_plugged(launch, proc)
        status, printed = await asyncio.to_thread(finish, proc)  # the host has exited...
        launcher = run.handles["acc"].launcher
        await wait_for(lambda: getattr(launcher, "reason", "") == "done")  # ...said bye...
        state_after_bye = run.state  # ...and the run goes on: the sink holds it open
        acc_state = run.handles["acc"].state
        gate.touch()
        result = await controller.wait_run(run, timeout=30)
    assert status == 0, printed
    assert "deregistered (done)" in printed
    assert state_after_bye is RunState.RUNNING
    assert acc_state is AIMState.DONE
    assert result.ok, result.error
    assert result.results["sink"]["shapes"] == [[4, 4]] * 3


@pytest.mark.parametrize(
    ("sig", "cause", "exit_status"),
    [
        (signal.SIGKILL, "no heartbeat from its remote host on", -signal.SIGKILL),
        (signal.SIGTERM, "interrupted by SIGTERM", 128 + signal.SIGTERM),
    ],
)
async def test_a_remote_host_that_dies_mid_run_fails_the_run_and_the_controller_goes_on(
    plugin: str, sig: signal.Signals, cause: str, exit_status: int, tmp_path: Path
) -> None:
    source = "{type: 'tests.helpers.plugin_aims:TensorTicker', params: {shape: [4, 8]}}"
    wf = remote_workflow(plugin, source, "{type: collect}", heartbeat=2.0)
    products: list[int] = []

    def on_event(event: Event) -> None:
        if event.source == "acc" and event.topic == "progress":
            products.append(int(event.data["step"]))

    async with Controller(tmp_path / "state", tcp="tcp://127.0.0.1:*") as controller:
        controller.subscribe(on_event)
        launch = asyncio.create_task(controller.launch(wf))
        proc = serve(plugin, controller.endpoints["tcp"], "acc", tmp_path)
        run = await hot_plugged(launch, proc)
        await wait_for(lambda: len(products) >= 3)  # the accelerator is computing
        proc.send_signal(sig)
        started = time.monotonic()
        result = await controller.wait_run(run, timeout=30)
        took = time.monotonic() - started
        status, printed = await asyncio.to_thread(finish, proc)

        # The controller is still usable: the next run with a new host succeeds.
        again = remote_workflow(plugin, FINITE, "{type: collect}")
        launch = asyncio.create_task(controller.launch(again))
        proc = serve(plugin, controller.endpoints["tcp"], "acc", tmp_path)
        second = await controller.wait_run(await hot_plugged(launch, proc), timeout=30)
        second_status, second_printed = await asyncio.to_thread(finish, proc)
    assert result.state is RunState.FAILED
    assert "AIM 'acc' failed" in (result.error or "")
    assert cause in (result.error or "")
    assert took < 10, f"the run took {took:.1f} s to end after the host died"
    assert status == exit_status, printed
    assert second.ok, second.error
    assert second_status == 0, second_printed


async def test_a_remote_host_keeps_its_aim_storage_on_its_own_machine(tmp_path: Path) -> None:
    wf = workflow(
        """
name: remote-storage
aims:
  store: {type: "tests.helpers.aims:StorageUser", placement: remote}
inputs:
  store.in: [a, b]
"""
    )
    own = tmp_path / "host-state"
    async with Controller(tmp_path / "state", tcp="tcp://127.0.0.1:*") as controller:
        launch = asyncio.create_task(controller.launch(wf))
        address = controller.endpoints["tcp"]
        proc = serve(
            "tests.helpers.aims:StorageUser",
            address,
            "store",
            ROOT,  # tests.helpers is importable from here, with python -m
            "--state-dir",
            str(own),
            aif=[sys.executable, "-m", "aif.cli.main"],
        )
        result = await controller.wait_run(await hot_plugged(launch, proc), timeout=30)
        status, printed = await asyncio.to_thread(finish, proc)
    assert result.ok, result.error
    assert status == 0, printed
    assert result.results["store"]["own"] == ["notes/a", "notes/b"]
    assert (own / "aims" / "store" / "notes" / "a").read_bytes() == b"a"
    assert not (tmp_path / "state" / "aims" / "store").exists()


# -- (e) aif aim serve never hangs: bad type, bad or dead address, nobody waiting --------


def test_aim_serve_refuses_a_misspelt_type_and_a_malformed_address(
    plugin: str, tmp_path: Path
) -> None:
    status, printed = finish(serve("int8-matmull", "tcp://127.0.0.1:9", "acc", tmp_path))
    assert status == 2
    assert "unknown AIM type 'int8-matmull' (did you mean 'int8-matmul'?)" in printed
    status, printed = finish(serve(plugin, "127.0.0.1:5555", "acc", tmp_path))
    assert status == 2
    assert "--controller '127.0.0.1:5555' is not an address; write it as tcp://HOST:PORT" in printed


def test_aim_serve_gives_up_on_a_controller_that_is_not_there(plugin: str, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    proc = serve(plugin, address, "acc", tmp_path, "--connect-timeout", "1")
    status, printed = finish(proc, timeout=30)
    assert status == 1
    assert f"no answer from the controller at {address} within 1 s" in printed
    assert time.monotonic() - started < 20


async def test_a_host_nobody_waits_for_or_of_the_wrong_type_is_refused_and_the_run_waits_on(
    plugin: str, tmp_path: Path
) -> None:
    wf = remote_workflow(plugin, FINITE, "{type: collect}")
    async with Controller(tmp_path / "state", tcp="tcp://127.0.0.1:*") as controller:
        address = controller.endpoints["tcp"]
        launch = asyncio.create_task(controller.launch(wf))
        stranger = await asyncio.to_thread(finish, serve(plugin, address, "nobody", tmp_path))
        wrong = await asyncio.to_thread(finish, serve("relay", address, "acc", tmp_path))
        assert not launch.done()  # neither ended the run: the right host may still come
        proc = serve(plugin, address, "acc", tmp_path)
        result = await controller.wait_run(await hot_plugged(launch, proc), timeout=30)
        right = await asyncio.to_thread(finish, proc)
    assert stranger[0] == 1
    assert (
        "refused by the controller: no workflow run is waiting for an AIM named 'nobody'"
        in (stranger[1])
    )
    assert wrong[0] == 1
    assert (
        "AIM 'acc' is declared as type 'int8-matmul' (aif_int8_accelerator.accelerator:Int8MatMul)"
        " but the remote host brings 'aif.aims.builtin:Relay'" in wrong[1]
    )
    assert result.ok, result.error
    assert right[0] == 0, right[1]


# -- aif run --listen: a remote AIM served from another terminal -------------------------


class AifRun:
    """``aif run`` in the repository (its workflows may use ``tests.helpers`` AIMs).

    Its output is read up to the serve command it prints, then on a thread, so that
    it never blocks on a full pipe while the test waits for something else.
    """

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aif.cli.main", "run", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    def serve_command(self) -> list[str]:
        """The ``aif aim serve`` command it printed, with this venv's ``aif``."""
        stdout = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            self.lines.append(line)
            if line.strip().startswith("aif aim serve"):
                self._reader = threading.Thread(target=self.lines.extend, args=(stdout,))
                self._reader.start()
                return [*AIF, *shlex.split(line)[1:]]
        self.end()
        raise AssertionError("aif run printed no serve command:\n" + self.output)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def end(self, timeout: float = 60) -> int:
        """Wait for it to exit and its output to be read; its exit status."""
        status = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return status


def test_aif_run_listens_and_prints_how_to_serve_each_remote_aim(
    plugin: str, tmp_path: Path
) -> None:
    out = tmp_path / "result.json"
    run = AifRun(
        str(EXAMPLE / "remote.yaml"), "--state-dir", str(tmp_path / "s"), "--json", str(out)
    )
    command = run.serve_command()
    assert "controller listening on tcp://127.0.0.1:" in run.output
    assert command[-2:] == ["--name", "accelerator"]
    host = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    status = run.end()
    assert host.returncode == 0, host.stderr
    assert status == 0, run.output
    result = json.loads(out.read_text())
    assert result["state"] == "succeeded"
    assert result["outputs"]["accelerator.y"] == 5
    assert result["results"]["accelerator"]["products"] == 5


def test_aim_serve_leaves_when_its_controller_dies(plugin: str, tmp_path: Path) -> None:
    wf = tmp_path / "ticking.yml"
    wf.write_text(
        f"""
name: ticking
aims:
  gen: {{type: 'tests.helpers.plugin_aims:TensorTicker', params: {{shape: [4, 8]}}}}
  acc: {{type: {plugin}, placement: remote, params: {{weights: {W}}}}}
connections: [gen.out -> acc.x]
"""
    )
    run = AifRun(str(wf), "--state-dir", str(tmp_path / "s"))
    host = subprocess.Popen(run.serve_command(), cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    assert host.stderr is not None
    for line in host.stderr:  # wait until the remote AIM computes, then kill the controller
        if line.rstrip().endswith("running"):
            break
    os.kill(run.proc.pid, signal.SIGKILL)
    run.end()
    started = time.monotonic()
    status, printed = finish(host, timeout=30)
    assert status == 1, printed
    assert "lost the controller at tcp://127.0.0.1:" in printed
    assert time.monotonic() - started < 15


# -- across machines: readers bind the interface that faces the peer --------------------


def _lan_address() -> str:
    """This machine's address on its network (the route to a TEST-NET address; no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))
        except OSError:
            pytest.skip("no network interface besides loopback")
        address: str = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("no network interface besides loopback")
    return address


async def test_a_controller_on_every_interface_wires_a_host_that_dialled_its_lan_address(
    plugin: str, tmp_path: Path
) -> None:
    lan = _lan_address()
    wf = remote_workflow(plugin, FINITE, "{type: collect, placement: process}")
    async with Controller(tmp_path / "state", tcp="tcp://0.0.0.0:*") as controller:
        port = controller.endpoints["tcp"].rpartition(":")[2]
        launch = asyncio.create_task(controller.launch(wf))
        proc = serve(plugin, f"tcp://{lan}:{port}", "acc", tmp_path)
        run = await hot_plugged(launch, proc)
        ready = {name: h.ready for name, h in run.handles.items()}
        result = await controller.wait_run(run, timeout=30)
        status, printed = await asyncio.to_thread(finish, proc)
    assert result.ok, result.error
    assert status == 0, printed
    acc, sink = ready["acc"], ready["sink"]
    assert acc is not None and sink is not None
    # The remote host's readers are on the LAN address, not its loopback; the local
    # sink that it sends to listens on every interface, as the controller does.
    assert acc.inputs["x"].normal.startswith(f"tcp://{lan}:")
    assert acc.control.normal.startswith(f"tcp://{lan}:")
    assert sink.inputs["in"].normal.startswith("tcp://0.0.0.0:")
