"""``aif --version`` and the daemon's commands load only what a client needs.

DESIGN.md: the CLI answers at once. Each command runs as a user runs it
(``python -X importtime -m aif ...``, the console script's ``main``), and what the
interpreter imported is read from ``-X importtime``'s report: lazy imports count, and
nothing in this test process can hide a leak. No timings here (the machine may be
busy); ``benchmarks/cli.py`` measures them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aif.cli.common import CommandParser, arguments_later
from aif.cli.main import build_parser
from aif.daemon import records
from tests.helpers.daemon import ROOT, DaemonProcess

pytestmark = pytest.mark.integration

#: Never on the path of a command that only talks to a daemon: the analog stack, the
#: controller and the daemon's running parts, the workflow loader, the Store, key files.
NEVER = (
    "torch",
    "aihwkit",
    "numpy",
    "matplotlib",
    "sklearn",
    "cryptography",
    "yaml",
    "zmq.asyncio",
    "aif.aims",
    "aif.host",
    "aif.controller",
    "aif.store",
    "aif.workflow.loader",
    "aif.workflow.model",
    "aif.workflow.resolver",
    "aif.daemon.daemon",
    "aif.daemon.state",
    "aif.daemon.scheduler",
    "aif.daemon.server",
    "aif.security.keys",
    "aif.security.curve",
    "aif.cli.progress",
    "aif.cli.doctor",
)
#: Nor, for a daemon command, the message models of the APIs (the client reads replies
#: through ``aif.api.wire``) or the pydantic they are built on.
CLIENT_NEVER = (*NEVER, "pydantic", "aif.api.user", "aif.api.aim")
#: Nor, for ``--version`` and ``--help``, anything that talks to a daemon or prints a table.
NOT_FOR_THE_PARSER = (*NEVER, "pydantic", "zmq", "msgpack", "rich", "aif.daemon", "aif.api")

WORKFLOW = """
name: trivial
aims:
  src: {type: source, params: {records: [1, 2, 3]}}
outputs: [src.out]
"""


def imports_of(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -m aif ARGS``; the finished process and every module it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "aif", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules = {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "aif.cli.main" in modules, done.stderr[-2000:]
    return done, modules


def leaked(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_version_and_help_load_nothing_but_the_parser() -> None:
    for args in (["--version"], ["--help"], ["ps", "--help"], ["status", "--help"]):
        done, modules = imports_of(*args)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not leaked(modules, NOT_FOR_THE_PARSER), (args, leaked(modules, NOT_FOR_THE_PARSER))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    # validation only: a submitted job stays queued (no instance serves its queue), so
    # suspend, resume and cancel each find the job in the state they act on
    proc = DaemonProcess(tmp_path_factory.mktemp("cli") / "state", "--instances", "validation=1")
    yield proc.start()
    proc.stop()


def test_the_daemon_commands_load_only_the_client(daemon: DaemonProcess, tmp_path: Path) -> None:
    workflow = tmp_path / "trivial.yaml"
    workflow.write_text(WORKFLOW)
    target = ["--state-dir", str(daemon.state_dir)]

    done, modules = imports_of("submit", str(workflow), "--hold", *target)
    assert done.returncode == 0, done.stderr[-2000:]
    held = done.stdout.strip()
    seen = {"submit --hold": modules}
    done, modules = imports_of("submit", str(workflow), *target)
    assert done.returncode == 0, done.stderr[-2000:]
    queued = done.stdout.strip()
    for name, args in {
        "ps": ["ps"],
        "status": ["status", held],
        "logs": ["logs", held],
        "suspend": ["suspend", queued],
        "resume": ["resume", queued],
        "cancel": ["cancel", held],
        "aims": ["aims"],
        "controller status": ["controller", "status"],
        "ps --json": ["ps", "--json"],
    }.items():
        done, modules = imports_of(*args, *target)
        assert done.returncode == 0, (name, done.stdout, done.stderr[-2000:])
        seen[name] = modules
    for name, modules in seen.items():
        assert "aif.daemon.client" in modules, name
        assert not leaked(modules, CLIENT_NEVER), (name, leaked(modules, CLIENT_NEVER))


def test_replies_are_read_without_pydantic_into_the_records_pydantic_makes(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    workflow = tmp_path / "trivial.yaml"
    workflow.write_text(WORKFLOW)
    with daemon.client() as client:
        job = client.submit(workflow, hold=True)
        status = client.call("status", job=job.id)
        replies: list[tuple[type[records._Record], Any]] = [
            (records.DaemonInfo, client.call("ping")),
            (records.JobStatus, status),
            (records.AIMListing, client.call("aims")),
            *((records.JobRecord, j) for j in client.call("list", states=None, limit=None)),
            *(
                (records.EventRow, {**e, "job": job.id})
                for e in client.call("logs", job=job.id, after=0)["events"]
            ),
        ]
    ended = {**status["job"], "ended": 7, "started": 3, "result": {"x": [1, 2.5]}, "extra": 1}
    replies += [
        (records.JobRecord, ended),  # ints for floats: float() either way; unknown keys ignored
        (records.JobStatus, {"job": ended, "waiting": "why"}),  # aims: the default
    ]
    for cls, reply in replies:
        quick, checked = records._read(cls, reply), records._adapter(cls).validate_python(reply)
        assert quick == checked and quick.to_json() == checked.to_json(), cls
        assert cls.from_json(reply) == checked
    # what only lax validation takes, or nothing does: pydantic reads it, as before
    for unfit in ({"attempts": 2.0}, {"attempts": True}, {"state": "gone"}, {"queues": "cpu"}):
        with pytest.raises(records._Unfit):
            records._read(records.JobRecord, {**ended, **unfit})
    assert records.JobRecord.from_json({**ended, "attempts": 2.0}).attempts == 2

    # and a client process that reads them loads no pydantic for it
    code = (
        "import json, sys\n"
        "from aif.daemon import records\n"
        "for name, reply in json.loads(sys.argv[1]):\n"
        "    getattr(records, name).from_json(reply)\n"
        "assert 'pydantic' not in sys.modules, 'reading the replies loaded pydantic'\n"
    )
    argv = json.dumps([[cls.__name__, reply] for cls, reply in replies])
    done = subprocess.run([sys.executable, "-c", code, argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_arguments_added_later_make_the_parser_an_eager_build_makes() -> None:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("dir")
        p.add_argument("--bind", default="127.0.0.1:8765", help="where (default %(default)s)")

    eager, lazy, plain = CommandParser(prog="x"), CommandParser(prog="x"), argparse.ArgumentParser()
    add(eager)
    arguments_later(lazy, add)
    arguments_later(plain, add)  # a plain parser (tests build them) gets them at once
    assert [a.dest for a in plain._actions] == ["help", "dir", "bind"]
    assert [a.dest for a in lazy._actions] == ["help"]  # not yet
    assert lazy.format_usage() == eager.format_usage()
    assert lazy.format_help() == eager.format_help()
    assert vars(lazy.parse_args(["d"])) == vars(eager.parse_args(["d"]))

    # and through aif's parser: the deferred subcommands parse with their defaults
    args = build_parser().parse_args(["chip", "emulate", "--tiles", "2"])
    assert args.tiles == 2 and args.func.__name__ == "cmd_chip_emulate"
    args = build_parser().parse_args(["store", "serve", "d"])
    assert (args.dir, args.bind) == ("d", "127.0.0.1:8765")
    args = build_parser().parse_args(["controller", "start"])
    assert args.listen == "tcp://127.0.0.1:*" and args.detach is False
