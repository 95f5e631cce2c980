"""How fast the ``aif`` command answers, against ``python -c pass``.

Run: ``python -m benchmarks.cli [--quick] [--runs N]``

A person types ``aif ps`` and waits for the interpreter to start, ``aif`` to build its
parser and import what the command needs, the daemon to answer, and the interpreter to
exit. This measures that whole wait, a fresh process every time, for:

* ``python -c pass``: the interpreter alone, the floor no command can go under;
* ``aif --version``: the parser alone;
* ``aif ps``, ``aif status ID``, ``aif submit FILE --hold``: the daemon's commands, each
  a round trip over the ipc User API to a real daemon (``aif controller start`` on a
  temporary state directory, stopped at the end, also on error).

The daemon serves only a ``validation`` instance and the jobs are submitted held, so
nothing runs beside the measurement. After one untimed warm-up run of each command,
the rounds interleave the commands (python, version, ps, status, submit, python, ...) so
that a busy moment of the machine hits all of them alike. One more run of each under
``python -X importtime`` counts the modules it loads (not timed).

The last line printed is one JSON object: ``python_s``, ``version_s``, ``ps_s``,
``status_s``, ``submit_s`` (median wall seconds), each command's ratio to
``python -c pass``, the modules each loads, the target (every ``aif`` command within
0.3 s) and whether it holds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe, rounded

#: Every ``aif`` command measured answers within this many seconds (median wall).
TARGET = 0.3
#: A workflow the daemon accepts; submitted held, it never runs.
WORKFLOW = """\
name: trivial
aims:
  src: {type: source, params: {records: [1, 2, 3]}}
outputs: [src.out]
"""
#: How long the daemon may take to serve.
START_TIMEOUT = 60.0


def aif_command() -> list[str]:
    """The ``aif`` console script beside this interpreter (``python -m aif`` if none)."""
    script = Path(sys.executable).parent / "aif"
    if script.exists():
        return [str(script)]
    found = shutil.which("aif")
    return [found] if found else [sys.executable, "-m", "aif"]


# --------------------------------------------------------------------------- the daemon


class Daemon:
    """``aif controller start`` in the foreground, as a child process we can always stop."""

    def __init__(self, state_dir: Path, log: Path) -> None:
        self.state_dir = state_dir
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.state_dir.mkdir(parents=True)
        command = [
            *aif_command(),
            "controller",
            "start",
            "--state-dir",
            str(self.state_dir),
            "--instances",
            "validation=1",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.state_dir
            )
        deadline = time.monotonic() + START_TIMEOUT
        info = self.state_dir / "controller.json"
        while time.monotonic() < deadline:
            try:
                if json.loads(info.read_text(encoding="utf-8")).get("pid") == self.proc.pid:
                    return
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited ({self.proc.returncode}):\n{self.text()}")
            time.sleep(0.05)
        raise SystemExit(f"the daemon did not serve within {START_TIMEOUT:g} s:\n{self.text()}")

    def stop(self) -> None:
        """SIGTERM (the daemon drains and exits), SIGKILL if it has not within 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


# --------------------------------------------------------------------------- measuring


def run(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall seconds of one run of ``command``, and what it printed; fails loudly."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return wall, done


def modules_of(command: list[str], cwd: Path) -> dict[str, int]:
    """How many modules ``command`` loads, and how many of them are aif's, as
    ``python -X importtime`` reports them (an ``aif`` command runs as ``python -m aif``)."""
    if command[0] == sys.executable:
        rest = command[1:]
    else:
        rest = ["-m", "aif", *command[len(aif_command()) :]]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *rest], cwd=cwd, capture_output=True, text=True
    )
    names = {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return {"total": len(names), "aif": sum(1 for n in names if n == "aif" or n.startswith("aif."))}


def measure(commands: dict[str, list[str]], runs: int, cwd: Path) -> dict[str, list[float]]:
    """``runs`` timed runs of each command, interleaved, after one untimed warm-up each."""
    for command in commands.values():
        run(command, cwd)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(1, runs + 1):
        print(f"  round {i}/{runs} ...", file=sys.stderr, flush=True)
        for name, command in commands.items():
            walls[name].append(run(command, cwd)[0])
    return walls


# --------------------------------------------------------------------------- report

LABELS = {
    "python": "python -c pass",
    "version": "aif --version",
    "ps": "aif ps",
    "status": "aif status ID",
    "submit": "aif submit FILE --hold",
}


def report(
    walls: dict[str, list[float]], modules: dict[str, dict[str, int]], runs: int
) -> dict[str, Any]:
    from aif.version import __version__

    m = describe(aif=__version__)
    med = {name: statistics.median(w) for name, w in walls.items()}
    floor = med["python"]
    print(
        f"\naif's commands against `python -c pass` ({m['cpu']}, {m['nproc']} cores, "
        f"Python {m['python']}): {runs} fresh processes each, wall time\n"
    )
    print(
        f"{'command':<24}{'median s':>9}{'min s':>8}{'max s':>8}{'ratio':>7}"
        f"{'extra ms':>10}{'modules':>9}{'aif':>5}"
    )
    for name, label in LABELS.items():
        w = walls[name]
        extra = "-" if name == "python" else f"{(med[name] - floor) * 1000:.0f}"
        print(
            f"{label:<24}{med[name]:9.3f}{min(w):8.3f}{max(w):8.3f}{med[name] / floor:7.1f}"
            f"{extra:>10}{modules[name]['total']:9d}{modules[name]['aif']:5d}"
        )
    slowest = max(med[name] for name in LABELS if name != "python")
    met = slowest <= TARGET
    print(
        f"\ntarget: every aif command within {TARGET} s (median): "
        f"{'met' if met else 'MISSED'} (slowest {slowest:.3f} s)"
    )
    return {
        **{f"{name}_s": med[name] for name in LABELS},
        **{f"{name}_ratio": med[name] / floor for name in LABELS if name != "python"},
        "target_s": TARGET,
        "target_met": met,
        "slowest_s": slowest,
        "runs": runs,
        "walls": {name: [round(w, 4) for w in walls[name]] for name in LABELS},
        "modules": modules,
        "machine": m,
    }


# --------------------------------------------------------------------------- main


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="5 runs of each command")
    parser.add_argument("--runs", type=int, default=None, help="timed runs of each (11)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (5 if args.quick else 11)
    if runs < 1:
        parser.error("--runs must be at least 1")

    started = time.perf_counter()
    temp = Path(tempfile.mkdtemp(prefix="aif-cli-bench-"))
    daemon = Daemon(temp / "state", temp / "daemon.log")
    try:
        workflow = temp / "trivial.yaml"
        workflow.write_text(WORKFLOW, encoding="utf-8")
        print("  starting a daemon ...", file=sys.stderr, flush=True)
        daemon.start()
        aif, target = aif_command(), ["--state-dir", str(daemon.state_dir)]
        submit = [*aif, "submit", str(workflow), "--hold", *target]
        job = run(submit, temp)[1].stdout.strip()  # held: `status` has a job to show
        commands = {
            "python": [sys.executable, "-c", "pass"],
            "version": [*aif, "--version"],
            "ps": [*aif, "ps", *target],
            "status": [*aif, "status", job, *target],
            "submit": submit,
        }
        walls = measure(commands, runs, temp)
        modules = {name: modules_of(command, temp) for name, command in commands.items()}
        summary = report(walls, modules, runs)
    finally:
        daemon.stop()
        if args.keep:
            print(f"  kept {temp}", file=sys.stderr)
        else:
            shutil.rmtree(temp, ignore_errors=True)
    summary["quick"] = args.quick
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(rounded(summary), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
