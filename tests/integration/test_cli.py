"""The ``aif`` command as a user runs it: a real process, real files, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import aif

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_validate_accepts_a_shipped_workflow() -> None:
    done = aif("validate", "workflows/digits-analog.yaml")
    assert done.returncode == 0, done.stderr
    assert "OK: workflow 'digits-analog' with 3 AIMs" in done.stdout


def test_validate_names_file_line_and_fix_for_a_bad_workflow() -> None:
    done = aif("validate", "tests/workflows/invalid-unknown-port.yml")
    assert done.returncode == 2
    assert (
        "invalid-unknown-port.yml:13: connections[1].to: AIM 'sink' has no input port 'inn'"
        " (did you mean 'in'?)" in done.stderr
    )


def test_validate_reports_a_missing_file() -> None:
    done = aif("validate", "no/such/workflow.yml")
    assert done.returncode == 2
    assert "no/such/workflow.yml" in done.stderr


def test_run_succeeds_and_writes_json(tmp_path: Path) -> None:
    wf = tmp_path / "feed.yml"
    wf.write_text(
        "name: feed\naims:\n  relay: {type: relay}\n  sink: {type: collect}\n"
        "connections: [relay.out -> sink.in]\ninputs:\n  relay.in: [1, 2, 3]\n"
    )
    out = tmp_path / "result.json"
    done = aif("run", str(wf), "--state-dir", str(tmp_path / "state"), "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    result = json.loads(out.read_text())
    assert result["state"] == "succeeded"
    assert result["results"]["sink"]["received"] == 3


def test_run_exit_code_says_the_run_failed(tmp_path: Path) -> None:
    wf = tmp_path / "crash.yml"
    wf.write_text(
        "name: crash\naims:\n  c: {type: 'tests.helpers.aims:Crasher', params: {after: 1}}\n"
        "inputs:\n  c.in: [1]\n"
    )
    done = aif("run", str(wf), "--state-dir", str(tmp_path / "state"), "-q")
    assert done.returncode == 1
    assert "AIM 'c' failed: RuntimeError in run: sensor overheated after 1 records" in done.stdout


def test_export_prints_mpai_aif_metadata() -> None:
    done = aif("export", "workflows/digits-analog.yaml")
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    aiw = meta["AIW"]
    assert aiw["Identifier"]["Specification"]["Standard"] == "MPAI-AIF"
    assert {s["Name"] for s in aiw["SubAIMs"]} == {"data", "classifier", "metrics"}


def test_doctor_reports_a_working_simulator() -> None:
    done = aif("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "analog tile" in done.stdout


def test_ctrl_c_stops_the_run_cleanly_and_keeps_results(tmp_path: Path) -> None:
    import signal

    wf = tmp_path / "tick.yml"
    wf.write_text(
        "name: tick\naims:\n  t: {type: 'tests.helpers.aims:Ticker', placement: process}\n"
        "outputs: [t.out]\n"
    )
    out = tmp_path / "result.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aif.cli.main",
            "run",
            str(wf),
            "--state-dir",
            str(tmp_path / "s"),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until the ticker runs, then interrupt as a user would
        seen.append(line)
        if "t: running" in line:
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    stdout = "".join(seen) + stdout
    assert proc.returncode == 130, stderr
    result = json.loads(out.read_text())
    assert result["state"] == "stopped"
    assert result["results"]["t"]["ticks"] == result["outputs"]["t.out"] > 0
    assert "stopping the run" in stdout


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def test_kill_9_of_the_controller_leaves_no_orphan_aim_process(tmp_path: Path) -> None:
    import os
    import signal
    import time

    wf = tmp_path / "orphan.yml"
    wf.write_text(
        "name: orphan\naims:\n  t: {type: 'tests.helpers.aims:Ticker', placement: process}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aif.cli.main", "run", str(wf), "--state-dir", str(tmp_path / "s")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "t: running" in line:
            break
    children = _children_of(proc.pid)
    assert children, "the process-placed AIM should be a child of the controller"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.1)
    alive = [
        c
        for c in children
        if Path(f"/proc/{c}/stat").exists() and ") Z" not in Path(f"/proc/{c}/stat").read_text()
    ]
    assert not alive, f"orphaned AIM processes still running: {alive}"


@pytest.mark.parametrize(
    "path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflows").glob("*.yaml"))
)
def test_every_shipped_workflow_validates(path: str) -> None:
    done = aif("validate", path)
    assert done.returncode == 0, done.stderr


def test_the_main_job_trains_an_analog_classifier_for_real(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = aif(
        "run",
        "workflows/digits-analog.yaml",
        "--state-dir",
        str(tmp_path / "s"),
        "-q",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())["results"]["classifier"]
    assert result["accuracy"] > 0.85  # a real analog network learned the digits
    assert {"acc@1s", "acc@1h", "acc@1d", "acc@1y"} <= set(result)


@pytest.mark.slow
def test_the_readme_main_job_trains_a_cnn_and_writes_its_report(tmp_path: Path) -> None:
    """workflows/hwa-training.yaml, as `bash scripts/run.sh` runs it (about 15 s)."""
    out = tmp_path / "result.json"
    workflow = ROOT / "workflows" / "hwa-training.yaml"
    args = ("run", str(workflow), "--state-dir", str(tmp_path / "s"), "-q", "--json", str(out))
    done = aif(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["results"]
    job = results["simulator"]["hwa-cnn"]
    assert job["status"] == "completed"
    assert job["accuracy"] > 0.9  # the README states about 0.98
    assert {"acc@1s", "acc@1h", "acc@1d", "acc@1y"} <= set(job)
    folder = Path(results["reporter"]["folder"])
    assert folder.parent == tmp_path / "results"
    for name in ("results.json", "metrics.csv", "training.png", "drift.png"):
        assert (folder / name).stat().st_size > 0, name
    assert (tmp_path / "s" / "aims" / "simulator" / "checkpoints" / "hwa-cnn.pt").exists()


def test_aim_serve_refuses_an_unknown_type_before_connecting() -> None:
    done = aif("aim", "serve", "relya", "--controller", "tcp://127.0.0.1:1", "--name", "r")
    assert done.returncode == 2
    assert "unknown AIM type 'relya' (did you mean 'relay'?)" in done.stderr


def test_check_accepts_the_shipped_experiments_and_names_every_mistake(tmp_path: Path) -> None:
    shipped = sorted(str(p) for p in (ROOT / "workflows" / "experiments").glob("*.yml"))
    done = aif("check", *shipped)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": OK: experiment") == len(shipped)
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\nmodel: {layers: [Relu]}\ntraining: {epoch: 3}\n")
    done = aif("check", str(bad))
    assert done.returncode == 1
    assert "model.layers.0: unknown layer type 'Relu'; did you mean 'ReLU'?" in done.stderr
    assert "training.epoch: unknown field 'epoch'; did you mean 'epochs'?" in done.stderr


def test_chip_emulate_serves_a_chip_until_sigterm() -> None:
    import asyncio
    import signal

    from aif.aims.analog.imc_chip.client import ChipClient

    with subprocess.Popen(
        [sys.executable, "-m", "aif.cli.main", "chip", "emulate", "--tiles", "2", "--seed", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("aif chip emulator listening on tcp://127.0.0.1:"), line
            address = line.split()[-1]

            async def ask() -> int:
                async with await ChipClient.connect(address, timeout=10) as chip:
                    return (await chip.info()).tiles

            assert asyncio.run(ask()) == 2
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    assert proc.returncode == 0


def test_chip_emulate_refuses_a_bad_listen_address() -> None:
    done = aif("chip", "emulate", "--listen", "127.0.0.1:5555")
    assert done.returncode == 2
    assert "tcp://HOST:PORT" in done.stderr
