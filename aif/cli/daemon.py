"""The daemon commands of ``aif`` (``controller start|stop|status``), with detaching
and stopping a daemon.

The job commands (``submit``, ``ps``, ``status``, ``logs``, ...) are in ``aif.cli.jobs``;
what every command shares (finding a daemon, tables, JSON) in ``aif.cli.common``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aif.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_target,
    arguments_later,
    connect,
    print_json,
    state_dir_of,
)
from aif.errors import DaemonError

#: Seconds ``controller start --detach`` waits for the daemon to serve.
DETACH_TIMEOUT = 60.0


# -- the daemon ------------------------------------------------------------------------


def cmd_controller_start(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground, or start it detached and return once it serves."""
    from aif.daemon.daemon import DaemonConfig, check_auth, serve_daemon
    from aif.daemon.scheduler import default_instances, parse_instances

    state_dir = state_dir_of(args)
    if args.drain_timeout <= 0:
        raise DaemonError(f"--drain-timeout must be positive, got {args.drain_timeout:g}")
    if args.worker_jobs < 0 or args.worker_memory < 0:
        raise DaemonError("--worker-jobs and --worker-memory must not be negative")
    if args.instances:
        instances = parse_instances(args.instances)
    else:  # on Ray, the cluster's instances come on top of the local validation one
        instances = parse_instances(["validation=1x4"]) if args.ray else default_instances()
    passphrase = sys.stdin.readline().rstrip("\n") if args.passphrase_stdin else None
    # --no-auth on an open address is refused here, before a detached daemon starts
    check_auth(DaemonConfig(state_dir, api=args.api, profile=args.profile, no_auth=args.no_auth))
    if args.detach:
        return _detach(args, state_dir, _passphrase_to_hand_on(args, state_dir))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # the AIM processes of its jobs write to the same log: with the time too
    os.environ["AIF_LOG_TIMES"] = "1"
    config = DaemonConfig(
        state_dir=state_dir,
        api=args.api,
        listen=args.listen,
        instances=instances,
        offered=args.offer or None,
        drain_timeout=args.drain_timeout,
        profile=args.profile,
        passphrase=passphrase,
        store=args.store,
        worker_jobs=args.worker_jobs,
        worker_memory=args.worker_memory,
        no_auth=args.no_auth,
        inproc=args.inproc,
        ray=args.ray,
        services=_ui_services(args.ui),
    )
    return serve_daemon(config)


def _ui_services(address: str | None) -> list[Any]:
    """The web UI as a daemon service when ``--ui`` asks for it (aiohttp loads only then)."""
    if address is None:
        return []
    from aif.ui.server import ui_service

    return [ui_service(address)]


def cmd_ui(args: argparse.Namespace) -> int:
    """``aif ui``: a daemon with the web UI on loopback, in the foreground."""
    from aif.daemon.client import pid_alive, read_daemon_file
    from aif.ui.server import read_url

    state_dir = state_dir_of(args)
    info = read_daemon_file(state_dir)
    if info is not None and pid_alive(int(info.get("pid", 0))):
        url = read_url(state_dir)
        if url is None:
            raise DaemonError(
                f"a controller daemon without the web UI already runs on {state_dir}; stop it "
                "(`aif controller stop`) or start it with --ui 127.0.0.1:PORT"
            )
        print(f"aif web UI: {url}")
        return EXIT_OK
    if not 0 <= args.port <= 65535:
        raise DaemonError(f"--port must be from 0 to 65535, got {args.port}")
    start = [
        "controller",
        "start",
        "--ui",
        f"127.0.0.1:{args.port}",
        *(["--instances", *args.instances] if args.instances else []),
    ]
    from aif.cli.main import build_parser

    start_args = build_parser().parse_args([*start, "--state-dir", str(state_dir)])
    return cmd_controller_start(start_args)


def _passphrase_to_hand_on(args: argparse.Namespace, state_dir: Path) -> str | None:
    """Secure profile, detached: check the identity here, where a terminal can ask for its
    passphrase, and return the passphrase the daemon needs (None: it needs none, or it
    finds ``$AIF_PASSPHRASE`` itself)."""
    if args.profile != "secure":
        return None
    import getpass

    from aif.security.keys import PASSPHRASE_ENV, KeyRing

    ring = KeyRing(state_dir)
    ring.public()  # no identity: fails here, naming `aif keys init`
    if not ring.protected() or os.environ.get(PASSPHRASE_ENV):
        ring.identity()
        return None
    if not sys.stdin.isatty():
        ring.identity()  # raises, naming $AIF_PASSPHRASE
        return None
    passphrase = getpass.getpass(f"passphrase for {ring.identity_path}: ")
    ring.identity(passphrase)  # a wrong one fails here, not in the background
    return passphrase


def _detach(args: argparse.Namespace, state_dir: Path, passphrase: str | None = None) -> int:
    from aif.daemon.client import pid_alive, read_daemon_file

    argv = [a for a in sys.argv[1:] if a != "--detach"] if args.argv is None else args.argv
    if passphrase is not None:  # handed on through a pipe, never on the command line
        argv = [*argv, "--passphrase-stdin"]
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "controller.log"
    with open(log_path, "ab") as log_file, open(os.devnull, "rb") as devnull:
        child = subprocess.Popen(
            [sys.executable, "-m", "aif", *argv, "--state-dir", str(state_dir)],
            stdin=devnull if passphrase is None else subprocess.PIPE,
            stdout=log_file,
            stderr=log_file,
            # Its own session (no terminal signals); the working directory stays, so
            # `package.module:Class` AIMs import as they do under `aif run`.
            start_new_session=True,
        )
    if passphrase is not None and child.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.write(passphrase.encode() + b"\n")
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
    deadline = time.monotonic() + DETACH_TIMEOUT
    while time.monotonic() < deadline:
        info = read_daemon_file(state_dir)
        if info is not None and info.get("pid") == child.pid:
            print(f"controller daemon started (pid {child.pid}), User API {info['api'][0]}")
            if info.get("auth") == "token":
                print(f"tcp User API token: {state_dir / 'api.token'} (--token, $AIF_TOKEN)")
            if args.ui is not None:
                from aif.ui.server import read_url

                print(f"aif web UI: {read_url(state_dir)}")
            print(f"log: {log_path}")
            return EXIT_OK
        if child.poll() is not None or not pid_alive(child.pid):
            tail = log_path.read_text(errors="replace").splitlines()[-10:]
            print(
                f"aif: error: the controller daemon exited ({child.returncode}):", file=sys.stderr
            )
            for line in tail:
                print(f"  {line}", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(0.1)
    raise DaemonError(f"the daemon did not serve within {DETACH_TIMEOUT:g} s; see {log_path}")


def cmd_controller_stop(args: argparse.Namespace) -> int:
    """Ask the daemon to drain and exit, and wait until it has."""
    from aif.daemon.client import pid_alive, read_daemon_file

    state_dir = state_dir_of(args)
    info = read_daemon_file(state_dir)
    if info is None or not pid_alive(int(info.get("pid", 0))):
        print(f"no controller daemon runs on {state_dir}")
        return EXIT_OK
    pid = int(info["pid"])
    try:
        with connect(args) as client:
            client.shutdown()
    except DaemonError:
        os.kill(pid, 15)  # it does not answer: SIGTERM drains just the same
    deadline = time.monotonic() + args.timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        print(
            f"aif: error: the daemon (pid {pid}) still runs after {args.timeout:g} s",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"controller daemon (pid {pid}) stopped")
    return EXIT_OK


def cmd_controller_status(args: argparse.Namespace) -> int:
    """Is a daemon serving? Its pid, endpoints, uptime and job counts."""
    try:
        with connect(args) as client:
            info = client.ping()
    except DaemonError as exc:
        if args.json:
            print_json({"running": False, "error": str(exc)})
        else:
            print(str(exc))
        return EXIT_FAILED
    if args.json:
        print_json({"running": True, **info.to_json()})
        return EXIT_OK
    counts = ", ".join(f"{n} {state}" for state, n in sorted(info.jobs.items())) or "no jobs"
    print(f"controller daemon pid {info.pid} on {info.machine}, up {info.uptime:.0f} s")
    print(f"  User API:   {', '.join(info.api)}")
    print(f"  AIM API:    {info.aim_api}")
    if info.curve:
        print(f"  profile:    {info.profile}, CURVE key {info.curve}")
    print(f"  state dir:  {info.state_dir}")
    if info.ray:
        print(f"  Ray:        {info.ray} (its nodes run the jobs' heavy AIMs)")
    print(f"  jobs:       {counts}")
    ui = _ui_url(Path(info.state_dir))
    if ui is not None:
        print(f"  web UI:     {ui}")
    if info.draining:
        print("  draining: taking no new jobs")
    return EXIT_OK


def _ui_url(state_dir: Path) -> str | None:
    """The web UI's URL a daemon on ``state_dir`` wrote (read without loading aiohttp)."""
    try:
        return (state_dir / "ui.url").read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


# -- the parser -------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Add the daemon commands, then the job commands, to ``aif``'s subparsers."""
    controller = sub.add_parser("controller", help="run the controller daemon").add_subparsers(
        dest="controller_command", required=True, metavar="CONTROLLER_COMMAND"
    )
    p = controller.add_parser("start", help="start the daemon (foreground unless --detach)")
    arguments_later(p, _start_arguments)
    p.set_defaults(func=cmd_controller_start, argv=None)

    p = controller.add_parser("stop", help="drain and stop the daemon")
    add_target(p, json_flag=False)
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="how long to wait (default 60)"
    )
    p.set_defaults(func=cmd_controller_stop)

    p = controller.add_parser("status", help="is the daemon running? its endpoints and job counts")
    add_target(p)
    p.set_defaults(func=cmd_controller_status)

    p = sub.add_parser(
        "ui", help="start a daemon with the web UI on 127.0.0.1 and print its URL (foreground)"
    )
    add_target(p, json_flag=False)
    p.add_argument(
        "--port", type=int, default=8765, metavar="N", help="the port (default 8765; 0: any free)"
    )
    p.add_argument(
        "--instances",
        action="append",
        default=[],
        metavar="QUEUE=N[xJOBS]",
        help="instances per queue, as `aif controller start --instances`",
    )
    p.set_defaults(func=cmd_ui)

    from aif.cli import jobs as cli_jobs

    cli_jobs.add_commands(sub)


def _start_arguments(p: argparse.ArgumentParser) -> None:
    """``controller start``'s arguments (their defaults name the AIM API's address)."""
    from aif.communication.addresses import DEFAULT_LISTEN

    add_target(p, json_flag=False)
    p.add_argument(
        "--detach",
        action="store_true",
        help="run in the background, log to STATE_DIR/controller.log",
    )
    p.add_argument(
        "--api",
        action="append",
        default=[],
        metavar="tcp://HOST:PORT",
        help="also serve the User API and the C2C API on tcp (peers call this); repeatable",
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="tcp://HOST:PORT",
        help=f"where remote AIM hosts register (default {DEFAULT_LISTEN}); use an address "
        "other machines reach for hosts there",
    )
    p.add_argument(
        "--instances",
        action="append",
        default=[],
        metavar="QUEUE=N[xJOBS]",
        help="instances per queue, e.g. cpu=2,cuda=1,validation=1x4 (default: validation=1x4, "
        "cpu=half the cores, imc=1, cuda=one per GPU; with --ray: validation=1x4)",
    )
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="take instances from the Ray cluster at ADDRESS (HOST:PORT, or auto) and run "
        "each job's heavy AIM as a Ray actor on its nodes (pip install 'aif[ray]'; docs/ray.md)",
    )
    p.add_argument(
        "--offer",
        action="append",
        default=[],
        metavar="TYPE",
        help="an AIM type this daemon hosts for peer controllers; repeatable (default: any)",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help="the Store that store:NAME@VERSION AIMs of submitted workflows come from: a "
        "directory, file:// or http(s):// URL (default: $AIF_STORE)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="on stop, how long live jobs get to stop cleanly (default 30)",
    )
    p.add_argument(
        "--worker-jobs",
        type=int,
        default=50,
        metavar="N",
        help="AIMs a warm worker (a process that imported torch and aihwkit once and forks "
        "a fresh host per AIM) forks before it is replaced; 0: no warm worker, a fresh "
        "python -m aif.host per AIM (default 50)",
    )
    p.add_argument(
        "--worker-memory",
        type=float,
        default=2048.0,
        metavar="MiB",
        help="replace a warm worker once its own resident memory passes this; "
        "0: no limit (default 2048)",
    )
    p.add_argument(
        "--profile",
        choices=["basic", "secure"],
        default="basic",
        help="secure: CURVE on the tcp User API, AIM API and C2C, clients let in by key "
        "(needs `aif keys init`; trust clients with `aif keys trust`) (default basic)",
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="basic profile: serve the tcp User API without a token (loopback --api "
        "addresses only; by default a token is made at start and written to "
        "STATE_DIR/api.token)",
    )
    p.add_argument(
        "--inproc",
        choices=["light", "allow", "process"],
        default="light",
        help="which placement: inproc AIMs of jobs run inside the daemon: light (aif's "
        "built-in source, relay, checksum, collect; others run in a child process), allow "
        "(all, as written: one trusted user), process (none) (default light)",
    )
    p.add_argument(
        "--ui",
        default=None,
        metavar="HOST:PORT",
        help="also serve the web UI there (e.g. 127.0.0.1:8765; port 0: any free); it prints "
        "its URL with a token, also in STATE_DIR/ui.url (docs/ui.md)",
    )
    p.add_argument("--passphrase-stdin", action="store_true", help=argparse.SUPPRESS)
