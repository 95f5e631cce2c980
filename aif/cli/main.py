"""The ``aif`` command: the User Agent of the MPAI-AIF reference model.

Subcommands: ``doctor`` (is this machine ready?), ``validate`` / ``export`` (read an
AIW without running it), ``check`` (analog experiments, as the validator sees them),
``run`` (an embedded controller runs an AIW to its end with live progress; it listens on
tcp for the AIW's ``placement: remote`` and ``ray`` AIMs), ``aim serve`` (host one AIM for a
controller elsewhere: hot-plug), ``aim list`` / ``aim show TYPE`` (the AIM types
available here: see ``aif.cli.aim_types``), ``chip emulate`` (an emulated IMC chip behind the
chip protocol), and the daemon's commands (``controller start|stop|status``, ``submit``,
``ps``, ``status``, ``logs``, ``suspend``, ``resume``, ``cancel``, ``aims``: see
``aif.cli.daemon``). Exit codes: 0 success,
1 the run or a check failed (for ``run`` also: no analog job completed while some
failed or were rejected), 2 bad input (file, arguments), 130 interrupted.

Building the parser imports no more than the standard library and the small ``aif.cli``
modules: each command imports what it needs when it runs, and the arguments whose
defaults live in heavier modules are added when their subcommand is used
(``aif.cli.common.arguments_later``), so ``aif --version`` and the daemon's commands
answer at once (benchmarks/cli.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aif.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandParser,
    arguments_later,
    console,
)
from aif.errors import AIFError


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check torch, aihwkit, CUDA and ZeroMQ; print the fix for each problem."""
    from aif.cli.doctor import format_report, run_checks
    from aif.storage.paths import default_state_dir

    checks = run_checks(default_state_dir())
    print(format_report(checks))
    return EXIT_FAILED if any(c.level == "fail" for c in checks) else EXIT_OK


def _load(args: argparse.Namespace) -> Any:
    """Load and resolve ``args.file`` with its ``--set`` overrides.

    ``store:NAME@VERSION`` AIMs are found in ``--state-dir``'s install cache, else
    fetched from ``--store`` (``$AIF_STORE``).
    """
    from aif.store.aim_types import StoreTypes
    from aif.workflow import load_workflow, resolve

    state_dir = Path(args.state_dir) if args.state_dir else None
    store_types = StoreTypes.default(state_dir, args.store)
    return resolve(load_workflow(Path(args.file), args.set or ()), store_types=store_types)


def cmd_validate(args: argparse.Namespace) -> int:
    """Load and check a workflow; print every problem with file, line and field."""
    resolved = _load(args)
    wf = resolved.workflow
    for warning in resolved.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{args.file}: OK: workflow {wf.name!r} with {len(wf.aims)} AIMs and "
        f"{len(wf.connections)} connections"
    )
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Check analog experiment files as the validator AIM would, without running them."""
    from aif.aims.analog.experiments import experiment_json, read_experiment_file
    from aif.aims.analog.validator import review_experiment

    failed = 0
    said = False
    for file in args.files:
        path = Path(file)
        try:
            entries = read_experiment_file(path)
        except ValueError as exc:
            print(f"{file}: {exc}", file=sys.stderr)
            failed += 1
            continue
        for raw in entries:
            if not said:
                _say_loading()
                said = True
            # the same JSON round trip experiment-source applies on the way to the validator
            verdict = review_experiment(json.loads(experiment_json(raw)), path.parent)
            if verdict.accepted and verdict.experiment is not None:
                labels = ", ".join(label or "rpu" for label in verdict.routes)
                print(f"{file}: OK: experiment {verdict.experiment.name!r} ({labels})")
                continue
            failed += 1
            name = raw.get("name", "?") if isinstance(raw, dict) else "?"
            print(f"{file}: experiment {name!r} is rejected:", file=sys.stderr)
            for where, message in verdict.problems:
                print(f"  - {where}: {message}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _say_loading() -> None:
    """Tell a person at a terminal why ``aif check`` takes a moment before its first word
    (nothing when stderr is a pipe or a file: scripts see the output they always saw)."""
    if sys.stderr.isatty():
        print("loading torch and aihwkit to check the experiment...", file=sys.stderr, flush=True)


def cmd_export(args: argparse.Namespace) -> int:
    """Print the MPAI-AIF JSON metadata of a workflow and its AIMs."""
    from aif.workflow import export_metadata

    print(json.dumps(export_metadata(_load(args)), indent=2))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run a workflow to its end in an embedded controller."""
    import asyncio

    from aif.cli.progress import RunDisplay

    resolved = _load(args)
    display = RunDisplay(console(), quiet=args.quiet)
    if args.quiet:  # the AIM processes this run starts log warnings only, as it does
        os.environ["AIF_LOG_LEVEL"] = "WARNING"
    interrupts: list[int] = []
    with display.aim_logs(logging.DEBUG if args.verbose else logging.INFO):
        result = asyncio.run(_run(resolved, args, display, interrupts))
    display.summary(result)
    from aif.aims.analog.run_outcome import job_counts, no_job_completed

    jobs = job_counts({n: a.cls for n, a in resolved.aims.items()}, result.results)
    problem = no_job_completed(jobs, result.ok)
    if problem is not None:
        display.console.print(problem, style="red", soft_wrap=True, markup=False)
    if interrupts:
        code = EXIT_INTERRUPTED
    else:
        code = EXIT_OK if result.ok and problem is None else EXIT_FAILED
    if args.json:
        data = {**_result_json(result), "jobs": jobs, "problem": problem, "exit_code": code}
        Path(args.json).write_text(json.dumps(data, indent=2, default=str))
    return code


#: Forks one ``aif run`` worker makes before it is replaced (restarts included): no limit.
_RUN_FORKS = 1_000_000


async def _run(resolved: Any, args: argparse.Namespace, display: Any, interrupts: list[int]) -> Any:
    import asyncio
    import signal

    from aif.communication.addresses import DEFAULT_LISTEN
    from aif.controller.controller import Controller

    state_dir = Path(args.state_dir) if args.state_dir else None
    aims = resolved.workflow.aims
    remote = {n: a.type for n, a in aims.items() if a.placement == "remote"}
    # AIMs with peers are started by those controllers; the rest wait for `aif aim serve`
    by_hand = {n: t for n, t in remote.items() if not aims[n].peers}
    on_ray = any(a.placement == "ray" for a in aims.values())  # their hosts dial back on tcp
    listen = args.listen or (DEFAULT_LISTEN if remote or on_ray else None)
    # A secure workflow that listens on tcp: its AIM API is CURVE, with this identity.
    secure = resolved.workflow.profile == "secure" and listen is not None
    make = Controller.with_identity if secure else Controller
    options: dict[str, Any] = {"tcp": listen, "ready_timeout": args.ready_timeout}
    from aif.controller.launchers.warm import WorkerPool, forking_supported

    if not args.fresh_processes and forking_supported():
        # The run's heavy AIMs fork from one worker that imports torch and aihwkit once
        # (a secure run's AIMs keep fresh processes: the controller skips the pool there).
        options["worker_pool"] = WorkerPool(max_jobs=_RUN_FORKS, warm_up=False)
    async with make(state_dir, **options) as controller:
        curve = controller.curve
        controller.subscribe(display.on_event)
        if listen is not None:
            key = curve.pair.public if curve is not None else None
            _announce(display.console, controller.endpoints["tcp"], by_hand, key)
        with display:
            run = await controller.launch(resolved)
            loop = asyncio.get_running_loop()
            pending: set[asyncio.Future[None]] = set()

            def interrupted(signum: int) -> None:
                # The first Ctrl-C (or SIGTERM) stops the run cleanly, keeping what it
                # produced; a second one aborts it.
                interrupts.append(signum)
                if len(interrupts) == 1:
                    display.note("stopping the run (again to abort)")
                    action = run.stop()
                else:
                    action = controller.abort(run, "aborted by the user")
                future = asyncio.ensure_future(action)
                pending.add(future)
                future.add_done_callback(pending.discard)

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, interrupted, sig)
            try:
                result = await controller.wait_run(run, args.timeout)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
    return result


def _announce(
    console: Any, endpoint: str, remote: dict[str, str], server_key: bytes | None = None
) -> None:
    """Say where the controller listens and, for each remote AIM, how to start its host.

    Printed before the run starts, because the run waits for those hosts to register.
    """
    from rich.markup import escape

    from aif.communication.addresses import WILDCARD_HOSTS, tcp_host
    from aif.controller.launchers.hand_started import serve_command

    console.print(f"controller listening on {endpoint}", soft_wrap=True)
    if tcp_host(endpoint) in WILDCARD_HOSTS:
        console.print("(from another machine, use this machine's address in place of that host)")
    if server_key is not None and remote:
        console.print(
            "secure profile: each host's key must be trusted here before `aif run` starts "
            "(`aif keys show` there, `aif keys trust NAME curve:KEY` here)",
            soft_wrap=True,
        )
    for name, aim_type in remote.items():
        console.print(f"waiting for remote AIM {name!r}; start its host with:", soft_wrap=True)
        console.print(
            f"  {escape(serve_command(aim_type, endpoint, name, server_key))}", soft_wrap=True
        )


def _result_json(result: Any) -> dict[str, Any]:
    from aif.cli.progress import result_files

    return {
        "id": result.id,
        "workflow": result.workflow,
        "state": result.state.value,
        "error": result.error,
        "seconds": result.seconds,
        "results": result.results,
        "outputs": {k: len(v) for k, v in result.outputs.items()},
        "files": result_files(result.results),
        "nodes": {aim: node.to_json() for aim, node in result.nodes.items()},
    }


def cmd_aim_serve(args: argparse.Namespace) -> int:
    """Host one AIM for a running controller (``placement: remote`` in the AIW)."""
    import asyncio

    from aif.aims.registry import resolve_aim_type
    from aif.communication.addresses import tcp_host
    from aif.errors import ConfigError
    from aif.host.serve import remote_curve, serve_host

    resolve_aim_type(args.type)  # fail here, with the registry's message, not later
    if args.controller.startswith("tcp://"):
        tcp_host(args.controller)  # a malformed address fails here, naming the right form
    elif not args.controller.startswith(("ipc://", "inproc://")):
        raise ConfigError(
            f"--controller {args.controller!r} is not an address; write it as tcp://HOST:PORT "
            "(the address `aif run` prints when it listens)"
        )
    if args.connect_timeout <= 0:
        raise ConfigError(f"--connect-timeout must be positive, got {args.connect_timeout:g}")
    state_dir = Path(args.state_dir) if args.state_dir else None
    # Secure profile: a CURVE AIM API, dialled with this machine's identity.
    identity, server_key = remote_curve(
        args.controller, args.server_key, state_dir, args.identity_stdin
    )
    # The person who started this host watches it: say what happens, at INFO.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(levelname)s [{args.name}] %(message)s",
        force=True,
    )
    return asyncio.run(
        serve_host(
            args.controller,
            args.name,
            args.workflow,
            args.type,
            connect_timeout=args.connect_timeout,
            handle_signals=True,
            state_dir=state_dir,
            identity=identity,
            server_key=server_key,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``aif`` (exposed for the docs and tests)."""
    from aif.version import __version__

    parser = argparse.ArgumentParser(
        prog="aif", description="An MPAI-AIF runtime for analog AI experiments."
    )
    parser.add_argument("--version", action="version", version=f"aif {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )

    p = sub.add_parser("doctor", help="check torch, aihwkit, CUDA and ZeroMQ")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("validate", help="check a workflow file without running it")
    p.add_argument("file", help="workflow YAML")
    _add_set(p)
    _add_store(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("check", help="check analog experiment files without running them")
    p.add_argument("files", nargs="+", metavar="EXPERIMENT", help="experiment YAML")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("export", help="print the MPAI-AIF JSON metadata of a workflow")
    p.add_argument("file", help="workflow YAML")
    _add_set(p)
    _add_store(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "run",
        help="run a workflow to its end with live progress",
        description="Run a workflow to its end in an embedded controller. Exit status: 0 "
        "it succeeded; 1 it failed, or no analog job completed while some failed or were "
        'rejected ("no job completed: ..."); 2 bad input; 130 interrupted.',
    )
    arguments_later(p, _run_arguments)
    p.set_defaults(func=cmd_run)

    aim = sub.add_parser("aim", help="work with AIMs").add_subparsers(
        dest="aim_command", required=True, metavar="AIM_COMMAND"
    )
    p = aim.add_parser("serve", help="host one AIM for a running controller (hot-plug)")
    _aim_serve_arguments(p)
    p.set_defaults(func=cmd_aim_serve)
    from aif.cli import aim_types as cli_aim_types

    cli_aim_types.add_commands(aim)

    chip = sub.add_parser("chip", help="work with IMC chips").add_subparsers(
        dest="chip_command", required=True, metavar="CHIP_COMMAND"
    )
    p = chip.add_parser(
        "emulate",
        help="serve an emulated IMC chip over the chip protocol (docs/imc-protocol.md)",
        description="Run the IMC chip emulator: PCM crossbar tiles with programming noise, "
        "drift, read noise and DAC/ADC quantisation behind the chip protocol, until Ctrl-C.",
    )
    arguments_later(p, _chip_emulate_arguments)
    p.set_defaults(func=cmd_chip_emulate)

    from aif.cli import attest as cli_attest
    from aif.cli import daemon as cli_daemon
    from aif.cli import keys as cli_keys
    from aif.cli import store as cli_store

    cli_daemon.add_commands(sub)
    cli_keys.add_commands(sub)
    cli_store.add_commands(sub)
    cli_attest.add_commands(sub)
    return parser


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """``run``'s arguments (``--listen``'s help names the default AIM API address)."""
    from aif.communication.addresses import DEFAULT_LISTEN

    p.add_argument("file", help="workflow YAML")
    _add_set(p)
    _add_store(p)
    p.add_argument("--timeout", type=float, default=None, help="stop the run after N seconds")
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON to PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="no live progress")
    p.add_argument(
        "--listen",
        metavar="tcp://HOST:PORT",
        help="also accept AIM hosts over tcp (default for a workflow with placement: remote "
        f"AIMs: {DEFAULT_LISTEN}, a free port); PORT * picks a free port",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="how long the AIMs, remote ones included, may take to register and set up "
        "(default 120)",
    )
    p.add_argument(
        "--fresh-processes",
        action="store_true",
        help="start each process AIM as a fresh python -m aif.host, rather than forking "
        "the heavy ones (simulator, validator) from one process that imported torch and "
        "aihwkit once",
    )


def _aim_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("type", help="AIM type: built-in name, package.module:Class or entry point")
    p.add_argument("--controller", required=True, help="the controller's AIM API address")
    p.add_argument("--name", required=True, help="the AIM's name in the waiting workflow")
    p.add_argument("--workflow", default=None, help="the workflow run id (optional)")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up when the controller has not answered within S seconds (default 30)",
    )
    p.add_argument(
        "--state-dir",
        help="where the AIM's storage (and this machine's identity, `aif keys init`) lives "
        "on this machine (default: the controller's "
        "state directory, the same path here)",
    )
    p.add_argument(
        "--server-key",
        metavar="curve:KEY",
        help="the controller's CURVE key when it runs the secure profile (`aif run` prints it; "
        "default: the key trusted for that address); the controller must trust this "
        "machine's key (`aif keys show`)",
    )
    p.add_argument("--identity-stdin", action="store_true", help=argparse.SUPPRESS)


def _chip_emulate_arguments(p: argparse.ArgumentParser) -> None:
    from aif.aims.analog.imc_chip import emulator

    emulator.add_arguments(p)


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        help="where storage, keys and installed Store packages live "
        "(default: $AIF_STATE_DIR or ~/.local/share/aif)",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the Store that store:NAME@VERSION AIMs not yet installed come from: a "
        "directory, file:// or http(s):// URL (default: $AIF_STORE)",
    )


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one value of the workflow for this run, VALUE read as YAML "
        "(e.g. aims.chip.params.chip=tcp://lab-board:5555); repeatable",
    )


def cmd_chip_emulate(args: argparse.Namespace) -> int:
    """Serve an emulated chip until interrupted (``aif chip emulate``)."""
    from aif.aims.analog.imc_chip import emulator

    return emulator.run(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aif`` console script."""
    # Idle OpenMP workers sleep instead of spinning. Set before torch loads and
    # inherited by the AIM processes: on small machines spinning workers of one
    # process stole the cores of another, and single batches stalled 25 times over
    # (measured on 2 cores: 250 ms instead of 10 ms). Set it yourself to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except AIFError as exc:
        print(f"aif: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `aif export FILE | head`: the reader left early; not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code


def program() -> None:
    """The ``aif`` command as a program: :func:`main`, then the process ends.

    A command that loaded torch or matplotlib (``aif run``'s reporter, ``aif check``)
    ends without the interpreter's teardown, which with them loaded takes a good part
    of a second after the work is done; everything is flushed first
    (:mod:`aif.fast_exit`).
    """
    status = main()
    if any(heavy in sys.modules for heavy in ("torch", "matplotlib")):
        from aif.fast_exit import exit_now

        exit_now(status)
    sys.exit(status)


if __name__ == "__main__":
    program()
