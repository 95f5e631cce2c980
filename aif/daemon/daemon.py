"""The controller daemon: one long-lived controller per state directory, driven over the User API.

``aif controller start`` runs :func:`serve_daemon`: it takes the state directory's lock
(so two daemons never share one database), opens the job store, starts an embedded
``Controller`` (AIM API on inproc/ipc, and tcp for remote hosts), serves the User API on
ipc (and tcp when asked), writes ``controller.json`` so clients find it, and dispatches
jobs until SIGTERM/SIGINT or a ``shutdown`` request. Then it drains: no new jobs, live
ones are asked to stop and are re-queued or marked interrupted by their workflow's
``on_restart``, and only then does it exit. A ``kill -9`` skips the drain; the next
start settles the same way from the database (``JobStore.recover``).

``--profile secure`` needs the state directory's identity (``aif keys init``): the tcp
User API and the tcp AIM API then serve CURVE with its key pair, letting in only the
trusted client keys (``aif keys trust``) and the daemon's own (so the local CLI and
hosts may use tcp too); peers are asked over CURVE. ``controller.json`` then names the
daemon's public key (``curve``), so local clients find it. SIGHUP re-reads the trusted
keys. The ipc User API stays plain: the state directory is the owner's alone.

In the basic profile the tcp User API (``--api tcp://...``) is served only to requests
that carry the daemon's **token**, as Jupyter serves its notebooks: a fresh one is
made at each start, logged, and written owner-only to ``api.token`` in the state
directory, where the local CLI and ``aif.Client`` find it. ``--no-auth`` serves tcp
without one, and is refused unless every tcp address is a loopback one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aif.api import user as user_api
from aif.communication.addresses import DEFAULT_LISTEN, MAX_IPC_PATH, tcp_host
from aif.controller.controller import Controller
from aif.controller.launchers.warm import (
    DEFAULT_MAX_JOBS,
    DEFAULT_MAX_RSS_MIB,
    WorkerPool,
    forking_supported,
)
from aif.daemon.client import DAEMON_FILE, TOKEN_FILE, read_daemon_file
from aif.daemon.jobs import InprocPolicy, JobManager
from aif.daemon.on_ray import RayInstances, place_on_ray
from aif.daemon.peer_hosting import PeerHosts
from aif.daemon.scheduler import Instance, Scheduler, default_instances
from aif.daemon.server import ApiServer
from aif.daemon.state import JobStore
from aif.errors import ChannelError, ConfigError, DaemonError
from aif.security.curve import (
    AIM_API_DOMAIN,
    OWN_KEY_NAME,
    USER_API_DOMAIN,
    ControllerCurve,
    Gatekeeper,
    key_text,
)
from aif.security.key_files import write_owner_only
from aif.store.aim_types import StoreTypes

log = logging.getLogger("aif.daemon")

LOCK_FILE = "controller.lock"
#: Where the AIM API listens on tcp unless told: loopback, any free port (remote hosts
#: and peers' hosts on this machine; give --listen for other machines).


#: A service of ``DaemonConfig.services``: the serving daemon -> an async context.
Service = Callable[["Daemon"], contextlib.AbstractAsyncContextManager[object]]


@dataclass
class DaemonConfig:
    """How one daemon runs."""

    state_dir: Path
    #: Extra User API endpoints (tcp) besides the ipc one; peers call these (C2C).
    api: Sequence[str] = ()
    listen: str = DEFAULT_LISTEN
    instances: list[Instance] = field(default_factory=default_instances)
    #: AIM types hosted for peer controllers (None: any this machine can load).
    offered: Sequence[str] | None = None
    drain_timeout: float = 30.0
    heartbeat_interval: float = 0.5
    #: ``secure``: CURVE on every tcp API, clients let in by key (needs ``aif keys init``).
    profile: Literal["basic", "secure"] = "basic"
    #: The identity's passphrase (None: ``$AIF_PASSPHRASE``, else a prompt on a tty).
    passphrase: str | None = field(default=None, repr=False)
    #: The Store ``store:NAME@VERSION`` AIMs come from (None: ``$AIF_STORE``).
    store: str | None = None
    #: AIMs a warm worker forks before it is replaced (``--worker-jobs``); 0: no warm
    #: worker, every ``process`` AIM gets a fresh ``python -m aif.host``.
    worker_jobs: int = DEFAULT_MAX_JOBS
    #: Resident MiB of a warm worker past which it is replaced (``--worker-memory``;
    #: 0: no limit).
    worker_memory: float = DEFAULT_MAX_RSS_MIB
    #: Basic profile: serve the tcp User API without a token (``--no-auth``; loopback
    #: addresses only).
    no_auth: bool = False
    #: Which ``placement: inproc`` AIMs of jobs run in the daemon's own loop (``--inproc``):
    #: ``light`` (aif's built-in sources and sinks; others run in a process), ``allow``
    #: (all, as written) or ``process`` (none).
    inproc: InprocPolicy = "light"
    #: The Ray cluster whose nodes run the jobs' heavy AIMs (``--ray``; ``auto``: the
    #: one ``$RAY_ADDRESS`` names or this machine's); None: this machine only.
    ray: str | None = None
    #: Services that run in the daemon's loop while it serves (the web UI, ``--ui``):
    #: each is given the serving daemon and returns an async context, entered once the
    #: User API serves and left after the drain. One that fails to start stops the daemon.
    services: Sequence[Service] = ()


class StateLock:
    """An exclusive ``flock`` on the state directory, held for the daemon's life."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``DaemonError`` naming the daemon that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DaemonError(
                f"another controller daemon (pid {holder}) already uses state directory "
                f"{self.path.parent}; stop it with `aif controller stop --state-dir "
                f"{self.path.parent}` or start this one with another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (the kernel also does when the process dies)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_loopback(address: str) -> bool:
    """Whether tcp ``address`` listens on this machine only (127.0.0.0/8, ::1, localhost)."""
    try:
        host = tcp_host(address).strip("[]")
    except ChannelError:
        return False
    return is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth(config: DaemonConfig) -> None:
    """Refuse ``--no-auth`` where it would serve anyone who reaches a port."""
    if not config.no_auth:
        return
    if config.profile == "secure":
        raise ConfigError(
            "--no-auth is for the basic profile; the secure profile lets clients in by "
            "their CURVE key (`aif keys trust`)"
        )
    open_ = [a for a in config.api if a.startswith("tcp://") and not is_loopback(a)]
    if open_:
        raise ConfigError(
            f"--no-auth would serve the User API to anyone who reaches {', '.join(open_)}; "
            "it is allowed on loopback addresses only (tcp://127.0.0.1:PORT): drop --no-auth "
            "(clients then give the token in STATE_DIR/api.token) or use --profile secure"
        )


def write_token(state_dir: Path) -> tuple[str, Path]:
    """A fresh token for the tcp User API, written owner-only to ``state_dir/api.token``."""
    token = secrets.token_urlsafe(32)
    path = state_dir / TOKEN_FILE
    write_owner_only(path, (token + "\n").encode())
    return token, path


def ipc_endpoint(state_dir: Path) -> str:
    """The User API's ipc address: in the state directory, or a short temp dir if too long."""
    path = state_dir / "api.sock"
    if len(str(path).encode()) > MAX_IPC_PATH - 8:
        path = Path(tempfile.mkdtemp(prefix="aif-api-")) / "api.sock"
    return f"ipc://{path}"


class Daemon:
    """The service: lock, store, controller, User API, jobs."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir).absolute()
        self.started = time.time()
        self._stop = asyncio.Event()
        self._lock = StateLock(self.state_dir)
        self.api_endpoints: list[str] = []
        self.jobs: JobManager | None = None
        self.peers = PeerHosts(self.state_dir, config.offered)
        self.controller: Controller | None = None
        #: The secure profile's CURVE side (None: basic).
        self.curve: ControllerCurve | None = None
        #: The tcp User API's token (None: no tcp, CURVE, or ``--no-auth``).
        self.token: str | None = None

    def request_stop(self) -> None:
        """Begin the drain (SIGTERM, SIGINT, ``shutdown``)."""
        self._stop.set()

    async def serve(self) -> int:
        """Run until asked to stop; returns the exit status."""
        check_auth(self.config)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            with JobStore(self.state_dir / JobStore.FILE_NAME) as store:
                return await self._serve(store)
        finally:
            self._remove_daemon_file()
            self._remove_token_file()
            self._lock.release()

    def _remove_token_file(self) -> None:
        """Remove ``api.token`` if it holds this daemon's token."""
        if self.token is None:
            return
        path = self.state_dir / TOKEN_FILE
        with contextlib.suppress(OSError):
            if path.read_text(encoding="utf-8").strip() == self.token:
                path.unlink()

    def _remove_daemon_file(self) -> None:
        """Remove ``controller.json`` if it is this daemon's (never another's)."""
        info = read_daemon_file(self.state_dir)
        if info is not None and info.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / DAEMON_FILE).unlink()

    async def _serve(self, store: JobStore) -> int:
        config = self.config
        if config.ray and config.profile == "secure":
            raise ConfigError(
                "--ray runs AIM hosts that Ray starts, which cannot present this daemon's "
                "trusted keys: the secure profile does not run on Ray; drop --ray or "
                "--profile secure"
            )
        ray = RayInstances.connect(config.ray) if config.ray else None
        try:
            return await self._serve_with(store, ray)
        finally:
            if ray is not None:
                await ray.close()

    async def _serve_with(self, store: JobStore, ray: RayInstances | None) -> int:
        config = self.config
        pool = None
        if config.worker_jobs > 0 and forking_supported():
            pool = WorkerPool(config.worker_jobs, config.worker_memory)
        elif config.worker_jobs > 0:
            log.warning("no warm worker: this system cannot watch forks (pidfd_open, Linux 5.3+)")
        options: dict[str, Any] = {
            "tcp": config.listen if ray is None else ray.listen(config.listen),
            "heartbeat_interval": config.heartbeat_interval,
            "worker_pool": pool,
            "ray_address": None if ray is None else ray.address,
        }
        if config.profile == "secure":
            controller = Controller.with_identity(
                self.state_dir, passphrase=config.passphrase, **options
            )
            self.curve = controller.curve
            assert self.curve is not None
            self.peers.identity = self.curve.pair
        else:
            controller = Controller(self.state_dir, **options)
        self.controller = controller
        async with controller:
            scheduler = Scheduler(config.instances)
            placer = None
            if ray is not None:
                scheduler.resize(await ray.instances())
                placer = place_on_ray
                ray.follow(scheduler)
            jobs = self.jobs = JobManager(store, controller, scheduler, config.inproc, placer)
            jobs.store_types = StoreTypes.default(self.state_dir, config.store)
            assert controller.ctx is not None
            token_file = None
            tcp = any(a.startswith("tcp://") for a in config.api)
            if tcp and self.curve is None and not config.no_auth:
                self.token, token_file = write_token(self.state_dir)
            server = ApiServer(controller.ctx, self.handle, self.curve, self.token)
            services = contextlib.AsyncExitStack()
            try:
                self.api_endpoints = [server.bind(ipc_endpoint(self.state_dir))]
                self.api_endpoints += [server.bind(address) for address in config.api]
                jobs.start()
                server.start()
                for service in config.services:  # serving before clients find the daemon
                    await services.enter_async_context(service(self))
                self._write_daemon_file(controller)
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self.request_stop)
                if self.curve is not None:
                    loop.add_signal_handler(signal.SIGHUP, self.reload_trust)
                log.info(
                    "controller daemon %d serving %s on state directory %s; profile %s%s",
                    os.getpid(),
                    ", ".join(self.api_endpoints),
                    self.state_dir,
                    config.profile,
                    f", CURVE key {key_text(self.curve.pair.public)}" if self.curve else "",
                )
                if self.token is not None:
                    log.info(
                        "the tcp User API needs this token: %s (also in %s; clients on this "
                        "machine read it there, others give --token or $AIF_TOKEN)",
                        self.token,
                        token_file,
                    )
                elif config.no_auth and tcp:
                    log.warning("--no-auth: the loopback tcp User API takes requests without token")
                await self._stop.wait()
                log.info("draining: stopping live jobs (up to %g s)", config.drain_timeout)
                await jobs.drain(config.drain_timeout)
            finally:
                self._remove_daemon_file()  # clients stop finding it before it closes
                await services.aclose()
                await server.close()
                await jobs.close()
                await self.peers.close()
        log.info("controller daemon %d stopped", os.getpid())
        return 0

    def reload_trust(self) -> None:
        """Read the trusted client keys again (SIGHUP): ``aif keys trust`` takes effect."""
        if self.curve is None or self.controller is None or self.controller.ctx is None:
            return
        from aif.security.keys import KeyRing

        try:
            clients = {**KeyRing(self.state_dir).clients(), OWN_KEY_NAME: self.curve.pair.public}
        except Exception as exc:  # a broken trust file: keep the lists we have, say why
            log.error("trusted keys not reloaded: %s", exc)
            return
        keeper = Gatekeeper.of(self.controller.ctx)
        for domain in (USER_API_DOMAIN, AIM_API_DOMAIN):
            if domain in keeper.domains:
                keeper.reload(domain, clients)
        log.info("reloaded the trusted keys: %d client key(s)", len(clients))

    def _security(self) -> dict[str, Any]:
        """What ``controller.json`` and ``ping`` say of the profile and the daemon's key."""
        return {
            "profile": self.config.profile,
            "curve": key_text(self.curve.pair.public) if self.curve is not None else None,
        }

    def _auth(self) -> str:
        """How the tcp User API lets clients in: ``curve``, ``token`` or ``none``."""
        if self.curve is not None:
            return "curve"
        return "token" if self.token is not None else "none"

    def _write_daemon_file(self, controller: Controller) -> None:
        info = {
            "pid": os.getpid(),
            "api": self.api_endpoints,
            "aim_api": controller.endpoints.get("tcp"),
            "state_dir": str(self.state_dir),
            "started": self.started,
            **self._security(),
            "auth": self._auth(),
        }
        path = self.state_dir / DAEMON_FILE
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, path)

    # -- the User API ------------------------------------------------------------------

    async def handle(self, request: user_api.Request) -> Any:
        """Answer one User API or C2C request."""
        jobs = self.jobs
        assert jobs is not None
        match request:
            case user_api.Ping():
                return self._ping()
            case user_api.Submit():
                return await jobs.submit(
                    request.text,
                    request.source,
                    request.overrides,
                    request.base_dir,
                    request.work_dir,
                    request.priority,
                    request.hold,
                )
            case user_api.ListJobs():
                return jobs.jobs(request.states, request.limit)
            case user_api.Status():
                return jobs.status(request.job)
            case user_api.Logs():
                return jobs.logs(request.job, request.after, request.limit)
            case user_api.Suspend():
                return await jobs.suspend(request.job)
            case user_api.Resume():
                return await jobs.resume(request.job)
            case user_api.Cancel():
                return await jobs.cancel(request.job)
            case user_api.AIMs():
                return {**jobs.aims(), "peer_hosts": self.peers.listing()}
            case user_api.Shutdown():
                self.request_stop()
                return {"pid": os.getpid(), "draining": True}
            case user_api.Attest():
                assert self.controller is not None
                return self.controller.secure.attest(request.nonce, self.config.profile)
            case user_api.PeerOffer() | user_api.PeerHost() | user_api.PeerRelease():
                return await self.peers.handle(request)
        raise DaemonError(f"no handler for {request.op!r}")  # pragma: no cover

    def _ping(self) -> dict[str, Any]:
        assert self.jobs is not None and self.controller is not None
        from aif.version import __version__

        return {
            "pid": os.getpid(),
            "version": __version__,
            "machine": socket.gethostname(),
            "state_dir": str(self.state_dir),
            "api": self.api_endpoints,
            "aim_api": self.controller.endpoints.get("tcp"),
            "started": self.started,
            "uptime": time.time() - self.started,
            "draining": self.jobs.draining,
            "jobs": self.jobs.store.counts(),
            "instances": len(self.jobs.scheduler.instances),
            **self._security(),
            "ray": self.controller.ray_address,
        }


def serve_daemon(config: DaemonConfig) -> int:
    """Run a daemon in this process until it is stopped (``aif controller start``)."""
    return asyncio.run(Daemon(config).serve())
