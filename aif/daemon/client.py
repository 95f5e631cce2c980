"""``aif.Client``: the Python client of the User API, and the CLI's way to a daemon.

A daemon writes ``controller.json`` into its state directory once it serves (its pid and
endpoints), so a client needs no address: ``Client()`` finds the daemon of the default
state directory, ``Client(state_dir=...)`` another one, ``Client(address=...)`` any
daemon by its ``ipc://`` or ``tcp://`` User API address. Calls are synchronous and time
out with a ``DaemonError`` that says how to check on the daemon; scripts need no asyncio.

Replies come back as the daemon's own records (``aif.daemon.records``): a job is a
``JobRecord`` (``job.state is JobState.SUCCEEDED``), ``status`` a ``JobStatus``, ``logs``
yields ``EventRow``s, ``aims`` gives an ``AIMListing``, ``ping`` a ``DaemonInfo``; each
``to_json()`` is the JSON the daemon sent. A reply that does not fit its record raises
``MalformedMessage`` naming the field. ``call`` sends any request and returns its
result as decoded, unchecked. A closed client refuses every call: make a new one.

From inside an event loop (a controller asking another to host AIMs), use
``aif.controller.launchers.peer.ask``, which also notices a peer that is not there at once.

A daemon in the secure profile serves its tcp User API with CURVE. A tcp client then
needs the daemon's public key (``server_key=`` / ``--server-key curve:KEY``; else the
``controller.json`` of the local state directory when it names that address; else
the key trusted for that endpoint, ``aif keys trust NAME curve:KEY --endpoint ADDR``)
and its own identity (``aif keys init``), which the daemon must trust. A handshake
that fails says why: refused (not trusted there), wrong server key, or CURVE on one
side only. The ipc User API is always plain: only the owner can reach it.

A basic-profile daemon serves its tcp User API only to requests that carry its token
(``token=``, else ``$AIF_TOKEN``, else the ``api.token`` of the local state directory
when its ``controller.json`` names that address). ipc and CURVE need none.

It loads only what a call needs (``aif ps`` answers at once): the CURVE and tcp
address helpers are imported when a tcp address is dialled, never for the ipc one.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from aif.api import wire
from aif.daemon.records import AIMListing, DaemonInfo, EventRow, JobRecord, JobStatus
from aif.errors import ChannelError, DaemonError, DaemonNotRunning, MalformedMessage

if TYPE_CHECKING:
    from aif.security.curve import ClientKeys, CurvePair

#: The file a serving daemon writes into its state directory.
DAEMON_FILE = "controller.json"
#: Where a basic-profile daemon writes its tcp User API's token (owner-only).
TOKEN_FILE = "api.token"
#: The environment variable a tcp client reads the token from.
TOKEN_ENV = "AIF_TOKEN"
#: Seconds a call waits for the daemon's reply.
DEFAULT_TIMEOUT = 10.0
#: Seconds between polls of ``logs(follow=True)``.
FOLLOW_INTERVAL = 0.3


def read_daemon_file(state_dir: Path) -> dict[str, Any] | None:
    """The ``controller.json`` of a daemon on ``state_dir``, or None if none serves there."""
    path = Path(state_dir) / DAEMON_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _state_dir_or_default(state_dir: Path | str | None) -> Path:
    """``state_dir``, else the user's (``aif.storage`` loads only then)."""
    if state_dir is not None:
        return Path(state_dir)
    from aif.storage.paths import default_state_dir

    return default_state_dir()


def find_address(state_dir: Path | None = None) -> str:
    """The User API address of the daemon on ``state_dir`` (default: the user's)."""
    state_dir = _state_dir_or_default(state_dir)
    info = read_daemon_file(state_dir)
    if info is None or not pid_alive(int(info.get("pid", 0))):
        raise DaemonNotRunning(
            f"no controller daemon runs on state directory {state_dir}; start one with "
            f"`aif controller start` (add --state-dir {state_dir} if it is not the default)"
        )
    endpoints = info.get("api")
    if not isinstance(endpoints, list) or not endpoints:
        raise DaemonError(f"{state_dir / DAEMON_FILE} names no User API endpoint")
    return str(endpoints[0])


def _same_endpoint(bound: str, address: str) -> bool:
    """Whether a daemon that bound ``bound`` is likely the one at ``address`` (same port,
    and the same host, or a wildcard or loopback bind dialled on this machine)."""
    from aif.communication.addresses import WILDCARD_HOSTS, tcp_host

    try:
        bound_host, host = tcp_host(bound), tcp_host(address)
    except ChannelError:
        return False
    if bound.rpartition(":")[2] != address.rpartition(":")[2]:
        return False
    local = ("localhost", "127.0.0.1", "::1", "[::1]")
    return (
        bound_host == host
        or bound_host in WILDCARD_HOSTS
        or (bound_host in local and host in local)
    )


def server_key_of(address: str, state_dir: Path) -> bytes | None:
    """The CURVE key of the daemon at tcp ``address`` as this machine knows it, if at all:
    the local daemon's ``controller.json`` when it serves there, else the key trusted for
    that endpoint."""
    from aif.security.curve import parse_curve_key, trusted_server_key

    info = read_daemon_file(state_dir)
    if info is not None and isinstance(info.get("curve"), str):
        endpoints = info.get("api")
        if isinstance(endpoints, list) and any(_same_endpoint(str(e), address) for e in endpoints):
            return parse_curve_key(str(info["curve"]), f"the key in {state_dir / DAEMON_FILE}")
    return trusted_server_key(state_dir, address)


def token_of(address: str, state_dir: Path) -> str | None:
    """The token of the basic-profile daemon at tcp ``address``: ``$AIF_TOKEN``, else the
    ``api.token`` of ``state_dir`` when that directory's daemon serves ``address``."""
    if not address.startswith("tcp://"):
        return None
    given = os.environ.get(TOKEN_ENV)
    if given:
        return given
    info = read_daemon_file(state_dir)
    endpoints = info.get("api") if info is not None else None
    if not isinstance(endpoints, list) or not any(
        _same_endpoint(str(e), address) for e in endpoints
    ):
        return None
    try:
        return (Path(state_dir) / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def client_keys(
    address: str,
    state_dir: Path,
    server_key: str | bytes | None = None,
    identity: CurvePair | None = None,
) -> ClientKeys | None:
    """How to dial the tcp User API at ``address``: CURVE keys, or None (plain, basic).

    CURVE when a server key is known (given, or found by ``server_key_of``); the client's
    own pair is ``identity``, else the identity of ``state_dir`` (``aif keys init``;
    a passphrase may be asked).
    """
    if not address.startswith("tcp://"):
        return None
    from aif.security.curve import ClientKeys, CurvePair, parse_curve_key

    key = (
        parse_curve_key(server_key, "--server-key")
        if server_key is not None
        else server_key_of(address, state_dir)
    )
    if key is None:
        return None
    if identity is None:
        from aif.security.keys import KeyRing

        own = KeyRing(state_dir).identity()
        identity = CurvePair(own.curve_public, own.curve_secret)
    return ClientKeys(identity, key)


class Client:
    """A connection to one controller daemon's User API."""

    def __init__(
        self,
        address: str | None = None,
        *,
        state_dir: Path | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        server_key: str | bytes | None = None,
        identity: CurvePair | None = None,
        token: str | None = None,
    ) -> None:
        """``server_key`` (``curve:KEY``) and ``identity``: dial a tcp address with CURVE
        (found from ``state_dir`` when not given; see the module's docstring). ``token``:
        the tcp User API's token of a basic-profile daemon (found the same way)."""
        state = _state_dir_or_default(state_dir)
        if address is None:
            address = find_address(state)
        elif not address.startswith(("ipc://", "tcp://")):
            raise DaemonError(
                f"controller address {address!r} is not one; write ipc://PATH or tcp://HOST:PORT"
            )
        self.address = address
        self.timeout = timeout
        #: The CURVE keys this client dials with (None: plain).
        self.keys = client_keys(address, state, server_key, identity)
        #: The token sent with each request (tcp, basic profile; None: none sent).
        self._token = (
            None
            if self.keys is not None or not address.startswith("tcp://")
            else token or token_of(address, state)
        )
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._sock: zmq.Socket[bytes] = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._monitor: zmq.Socket[bytes] | None = None
        if self.keys is not None:
            self.keys.apply(self._sock)
        if address.startswith("tcp://"):  # a handshake that fails says why, at once
            self._monitor = self._sock.get_monitor_socket(
                zmq.EVENT_CONNECTED
                | zmq.EVENT_HANDSHAKE_SUCCEEDED
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            )
        self._handshaken = False
        #: A tcp connection came up at least once (it may then fail the handshake).
        self._connected = False
        self._sock.connect(address)
        self._rids = itertools.count(1)
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (or its ``with`` block ended)."""
        return self._closed

    def close(self) -> None:
        """Close the socket; later calls raise ``DaemonError``. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._monitor is not None:
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        self._sock.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, op: str, timeout: float | None = None, **params: Any) -> Any:
        """Send one request and return its result as decoded, unchecked (or raise the
        error it names): the escape hatch for requests the typed verbs do not cover."""
        if self._closed:
            raise DaemonError(
                f"this aif.Client of {self.address} is closed; make a new aif.Client to call {op!r}"
            )
        rid = next(self._rids)
        if self._token is not None:
            params = {**params, "token": self._token}
        self._sock.send(wire.pack_map({"op": op, "rid": rid, **params}))
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            ready = dict(poller.poll(int(left * 1000) + 1)) if left > 0 else {}
            if not ready:
                from aif.security.curve import handshake_failure, no_handshake

                if self._monitor is not None:
                    self._check_handshake(self._monitor)
                if self.keys is not None and not self._handshaken:
                    raise DaemonError(no_handshake(self.address, wait))
                if self._connected and not self._handshaken:
                    # Reached, but no handshake ever completed: a plain client of a
                    # CURVE server, whose mismatch libzmq did not get to report.
                    why = handshake_failure(
                        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0, self.address, curve=False
                    )
                    raise DaemonError(f"no answer within {wait:g} s; {why}")
                raise DaemonError(
                    f"the controller at {self.address} did not answer {op!r} within {wait:g} s; "
                    "is it running? (`aif controller status`)"
                )
            if self._monitor is not None and self._monitor in ready:
                self._check_handshake(self._monitor)
            if self._sock not in ready:
                continue
            reply = wire.unpack_api_message(self._sock.recv(), "User API")
            if isinstance(reply, dict) and reply.get("rid") == rid:
                return wire.reply_result(reply, self.address)
            # a late reply to an earlier call that timed out: not ours, skip it

    def _check_handshake(self, monitor: zmq.Socket[bytes]) -> None:
        """Raise ``DaemonError`` saying why, if the monitor reports a failed handshake."""
        from zmq.utils.monitor import parse_monitor_message

        from aif.security.curve import handshake_failure

        while monitor.poll(0):
            event = parse_monitor_message(monitor.recv_multipart())
            if event["event"] == zmq.EVENT_CONNECTED:
                self._connected = True
                continue
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._handshaken = True
                continue
            why = handshake_failure(
                event["event"], event["value"], self.address, self.keys is not None
            )
            if why is not None:
                raise DaemonError(why)

    # -- the User API ------------------------------------------------------------------

    @property
    def _sender(self) -> str:
        return f"the controller at {self.address}"

    def _job(self, data: object) -> JobRecord:
        return JobRecord.from_json(data, self._sender)

    def ping(self) -> DaemonInfo:
        """The daemon's pid, version, endpoints, job counts and uptime."""
        return DaemonInfo.from_json(self.call("ping"), self._sender)

    def submit(
        self,
        workflow: Path | str,
        overrides: Sequence[str] = (),
        *,
        priority: int = 0,
        hold: bool = False,
    ) -> JobRecord:
        """Queue the AIW in file ``workflow``; returns the job (its ``id`` names it later).

        The file is read here and its text travels, so the job runs as submitted even if
        the file changes; relative paths in it are read from the file's folder.
        """
        path = Path(workflow)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DaemonError(f"cannot read workflow file {str(path)!r}: {exc.strerror}") from exc
        return self._job(
            self.call(
                "submit",
                text=text,
                source=str(path),
                overrides=list(overrides),
                base_dir=str(path.resolve().parent),
                work_dir=os.getcwd(),
                priority=priority,
                hold=hold,
            )
        )

    def jobs(
        self, states: Sequence[str] | None = None, limit: int | None = None
    ) -> list[JobRecord]:
        """Jobs, oldest first (by default: unfinished ones and the latest finished).

        ``states``: only jobs in these (``JobState`` members or their values).
        """
        wanted = [str(s) for s in states] if states is not None else None
        result = self.call("list", states=wanted, limit=limit)
        if not isinstance(result, list):
            raise MalformedMessage(f"{self._sender} sent a job list that is not a list")
        return [self._job(job) for job in result]

    def status(self, job: str) -> JobStatus:
        """One job: its record, why it waits, its AIMs while it runs."""
        return JobStatus.from_json(self.call("status", job=job), self._sender)

    def logs(self, job: str, *, after: int = 0, follow: bool = False) -> Iterator[EventRow]:
        """The job's events in order; with ``follow``, until the job has ended."""
        while True:
            page = self.call("logs", job=job, after=after)
            if not isinstance(page, dict) or not isinstance(page.get("events"), list):
                raise MalformedMessage(f"{self._sender} sent a page of events that is not one")
            job_id = page.get("job", job)
            events = [
                EventRow.from_json({**e, "job": job_id} if isinstance(e, dict) else e, self._sender)
                for e in page["events"]
            ]
            yield from events
            if events:
                after = events[-1].seq
                continue
            if not follow or page.get("final"):
                return
            time.sleep(FOLLOW_INTERVAL)

    def suspend(self, job: str) -> JobRecord:
        """Pause a running job, or hold a queued one."""
        return self._job(self.call("suspend", job=job))

    def resume(self, job: str) -> JobRecord:
        """Continue a suspended or held job."""
        return self._job(self.call("resume", job=job))

    def cancel(self, job: str) -> JobRecord:
        """Stop a job; what it produced so far is kept."""
        return self._job(self.call("cancel", job=job))

    def aims(self) -> AIMListing:
        """Instances (queue, state, capabilities, load), the AIMs running now, and the AIMs
        hosted for peer controllers."""
        return AIMListing.from_json(self.call("aims"), self._sender)

    def shutdown(self) -> None:
        """Ask the daemon to drain and exit."""
        self.call("shutdown")

    def wait(self, job: str, timeout: float | None = None, poll: float = 0.2) -> JobRecord:
        """Block until the job is in a final state; returns its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.status(job).job
            if record.final:
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job} is still {record.state} after {timeout:g} s")
            time.sleep(poll)
