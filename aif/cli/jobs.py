"""The job commands of ``aif``: ``submit``, ``ps``, ``status``, ``logs``, ``suspend``,
``resume``, ``cancel``, ``aims``.

Each is a thin layer over :class:`aif.Client`, so what the CLI can do a script can do
in Python. The client returns the daemon's records (``aif.daemon.records``); listings
print a table for people and, with ``--json``, one JSON document for scripts: each
record's ``to_json()``, the JSON the daemon sent. ``aif submit`` prints the job id
alone on stdout (``id=$(aif submit wf.yaml)``) and the rest on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aif.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_target,
    age,
    connect,
    print_json,
    state_dir_of,
    table,
)

if TYPE_CHECKING:
    from aif.daemon.client import Client
    from aif.daemon.offline import OfflineJobs
    from aif.daemon.records import EventRow, JobRecord

# -- jobs ----------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    """Queue a workflow on the daemon; print its job id."""
    with connect(args) as client:
        job = client.submit(args.file, args.set, priority=args.priority, hold=args.hold)
        if args.wait:
            job = client.wait(job.id)
    if args.json:
        print_json(job.to_json())
    else:
        print(job.id)
        where = " or ".join(job.queues)
        print(f"{job.state} in {where}; follow it: aif logs {job.id} --follow", file=sys.stderr)
    if args.wait:
        from aif.daemon.records import JobState

        return EXIT_OK if job.state is JobState.SUCCEEDED else EXIT_FAILED
    return EXIT_OK


@contextlib.contextmanager
def _jobs_of(args: argparse.Namespace) -> Iterator[Client | OfflineJobs]:
    """The daemon's client, or, when no daemon runs on the state directory, the jobs as
    it left them (read-only): ``ps``, ``status`` and ``logs`` work either way."""
    from aif.errors import DaemonNotRunning

    try:
        client = connect(args)
    except DaemonNotRunning:
        state_dir = state_dir_of(args)
        if args.controller or os.environ.get("AIF_CONTROLLER"):
            raise  # a daemon named by address: its state is not here to read
        from aif.daemon.offline import OfflineJobs
        from aif.daemon.state import JobStore

        if not (state_dir / JobStore.FILE_NAME).is_file():
            raise  # no daemon ever ran here: nothing to read, start one
        print(
            f"aif: no daemon runs on {state_dir}; its jobs as it left them (read-only)",
            file=sys.stderr,
        )
        with OfflineJobs(state_dir) as offline:
            yield offline
        return
    with client:
        yield client


def cmd_ps(args: argparse.Namespace) -> int:
    """List jobs."""
    states = args.state or (None if not args.all else [])
    with _jobs_of(args) as client:
        jobs = client.jobs(states if states else None, args.limit) if not args.all else _all(client)
    if args.json:
        print_json([j.to_json() for j in jobs])
        return EXIT_OK
    rows = [
        [
            j.id,
            j.state.value,
            j.instance or j.queue or j.queues[0],
            str(j.priority),
            str(j.attempts),
            age(j.submitted),
            j.detail[:90],
        ]
        for j in jobs
    ]
    if not rows:
        print("no jobs")
        return EXIT_OK
    table(None, ["ID", "STATE", "WHERE", "PRI", "TRIES", "SUBMITTED", "DETAIL"], rows)
    return EXIT_OK


def _all(client: Client | OfflineJobs) -> list[JobRecord]:
    from aif.daemon.records import JobState

    return client.jobs(list(JobState))


def cmd_status(args: argparse.Namespace) -> int:
    """One job in detail."""
    with _jobs_of(args) as client:
        status = client.status(args.job)
    if args.json:
        print_json(status.to_json())
        return EXIT_OK
    job = status.job
    print(f"job        {job.id}")
    print(f"workflow   {job.workflow} ({job.source})")
    print(f"state      {job.state}" + (f": {job.detail}" if job.detail else ""))
    if status.waiting is not None:
        print(f"waiting    {status.waiting}")
    print(f"queues     {', '.join(job.queues)}   priority {job.priority}")
    print(f"instance   {job.instance or '-'}   attempts {job.attempts}")
    started, ended = age(job.started), age(job.ended)
    print(f"submitted  {age(job.submitted)}   started {started}   ended {ended}")
    if job.overrides:
        print(f"--set      {' '.join(job.overrides)}")
    if job.result:
        for aim, values in job.result.get("results", {}).items():
            for key, value in values.items():
                print(f"result     {aim}.{key} = {json.dumps(value, default=str)[:200]}")
        for aim, node in (job.result.get("nodes") or {}).items():  # placement: ray
            print(f"ran on     {aim}: Ray node {node.get('ip')} ({node.get('node_id', '')})")
    if status.aims:
        rows = [
            [a.name, a.type, a.placement, a.state, str(a.pid or "-"), a.host, _caps(a.capabilities)]
            for a in status.aims
        ]
        table("AIMs", ["AIM", "TYPE", "PLACEMENT", "STATE", "PID", "HOST", "CAPABILITIES"], rows)
    return EXIT_OK


def format_event(event: EventRow) -> str:
    """One event as a log line: time, source, topic, data."""
    stamp = dt.datetime.fromtimestamp(event.time).strftime("%H:%M:%S")
    data = event.data
    if event.topic == "log" and "message" in data:
        text = f"{data.get('level', 'info')}: {data['message']}"
    else:
        text = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in data.items())
    return f"{stamp} {event.source:>12} {event.topic:<8} {text}"


def cmd_logs(args: argparse.Namespace) -> int:
    """A job's events; with --follow until it ends."""
    with _jobs_of(args) as client:
        job_id = client.status(args.job).job.id
        for event in client.logs(job_id, follow=args.follow):
            if args.json:
                print(json.dumps(event.to_json(), default=str), flush=True)
            else:
                print(format_event(event), flush=True)
        if args.follow:
            final = client.status(job_id).job
            if not args.json:
                print(f"job {job_id} {final.state}" + (f": {final.detail}" if final.detail else ""))
            from aif.daemon.records import JobState

            return EXIT_OK if final.state is JobState.SUCCEEDED else EXIT_FAILED
    return EXIT_OK


def _job_verb(verb: str) -> Any:
    def command(args: argparse.Namespace) -> int:
        with connect(args) as client:
            job: JobRecord = getattr(client, verb)(args.job)
        if args.json:
            print_json(job.to_json())
        else:
            print(f"job {job.id}: {job.state}" + (f" ({job.detail})" if job.detail else ""))
        return EXIT_OK

    command.__doc__ = f"{verb.capitalize()} a job."
    return command


def cmd_aims(args: argparse.Namespace) -> int:
    """Instances (queue, state, capabilities, load) and the AIMs running now."""
    with connect(args) as client:
        aims = client.aims()
    if args.json:
        print_json(aims.to_json())
        return EXIT_OK
    rows = [
        [
            i.name,
            i.queue,
            i.state,
            i.load,
            _caps(i.capabilities),
            ", ".join(i.running),
        ]
        for i in aims.instances
    ]
    table("instances", ["INSTANCE", "QUEUE", "STATE", "LOAD", "CAPABILITIES", "JOBS"], rows)
    if aims.hosts:
        rows = [
            [h.job, h.name, h.type, h.placement, h.state, str(h.pid or "-"), _caps(h.capabilities)]
            for h in aims.hosts
        ]
        columns = ["JOB", "AIM", "TYPE", "PLACEMENT", "STATE", "PID", "CAPABILITIES"]
        table("running AIMs", columns, rows)
    if aims.peer_hosts:
        rows = [
            [h.workflow, h.aim, h.type, str(h.pid), h.controller, h.state] for h in aims.peer_hosts
        ]
        table(
            "AIMs hosted for peer controllers", ["RUN", "AIM", "TYPE", "PID", "FOR", "STATE"], rows
        )
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """Add the job commands to ``aif``'s subparsers."""
    p = sub.add_parser("submit", help="queue a workflow on the daemon; prints the job id")
    p.add_argument("file", help="workflow YAML")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one value of the workflow for this job, VALUE read as YAML; repeatable",
    )
    p.add_argument(
        "--priority", type=int, default=0, help="higher runs first (default 0, -1000..1000)"
    )
    p.add_argument(
        "--hold", action="store_true", help="queue it held: it starts after `aif resume`"
    )
    p.add_argument(
        "--wait", action="store_true", help="wait until it ends; exit 1 unless it succeeded"
    )
    add_target(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("ps", help="list jobs")
    p.add_argument(
        "--state", action="append", metavar="STATE", help="only jobs in STATE; repeatable"
    )
    p.add_argument("-a", "--all", action="store_true", help="every job, not only the recent ones")
    p.add_argument("--limit", type=int, default=None, help="at most N unfinished jobs")
    add_target(p)
    p.set_defaults(func=cmd_ps)

    for verb, text in (
        ("status", "show one job"),
        ("suspend", "pause a running job, or hold a queued one"),
        ("resume", "continue a suspended or held job"),
        ("cancel", "stop a job; a queued one never starts"),
    ):
        p = sub.add_parser(verb, help=text)
        p.add_argument("job", help="job id (a unique prefix will do)")
        add_target(p)
        p.set_defaults(func=cmd_status if verb == "status" else _job_verb(verb))

    p = sub.add_parser("logs", help="show a job's events")
    p.add_argument("job", help="job id (a unique prefix will do)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    add_target(p)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("aims", help="instances, their load and capabilities, and running AIMs")
    add_target(p)
    p.set_defaults(func=cmd_aims)


def _caps(capabilities: Mapping[str, Any]) -> str:
    """``key=value`` pairs, as the tables show what an AIM or instance can do (a list of
    records, such as a Ray instance's ``nodes``, as its length: ``--json`` has them)."""
    return " ".join(f"{k}={_cap(v)}" for k, v in capabilities.items())


def _cap(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return len(value)
    return value
