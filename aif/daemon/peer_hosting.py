"""B's side of the Controller-to-Controller API: hosting AIMs for peer controllers.

A peer (controller A, see :mod:`aif.controller.launchers.peer`) asks with ``peer.host`` for a
host of one AIM of its run; ``PeerHosts`` checks the type (only those offered with
``--offer``, default any this machine can load; an un-offered one is refused without
being imported), starts ``aif aim serve TYPE --controller A ...`` as a child process and
answers once the host dials A. From then on the host is A's like any remote host: it
registers, is wired and supervised over A's AIM API, and says ``bye`` to A.

B's part is the processes: each host gets a parent-death signal
(:mod:`aif.aims.children`), so none outlives B even after ``kill -9``; each is
reaped by its own task; ``peer.release`` (A's run ended) and shutdown end them
(SIGTERM, then SIGKILL); the last :data:`FINISHED_KEPT` that ended stay listed for
``aif aims``, and the latest few are reported in ``peer.offer`` answers so that A
learns when a host it waits for ended before it registered.

Secure profile: B's hosts dial A's CURVE AIM API with B's identity (handed to each host
on its stdin, never on its command line) and the key A sent in ``peer.host``; A must
trust B's key. B, in the secure profile, hosts only for controllers that send one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aif.aims.children import guarded_argv
from aif.aims.registry import resolve_aim_type
from aif.api.user import PeerHost, PeerOffer, PeerRelease
from aif.communication.addresses import WILDCARD_HOSTS, tcp_host
from aif.controller.launchers.protocol import describe_exit
from aif.errors import AIFError, ChannelError, ControllerError
from aif.security.curve import CurvePair

log = logging.getLogger("aif.c2c")

#: Seconds B gives a new host to show that it runs (it imports its AIM's class first).
HOST_START_TIMEOUT: Final = 45.0
#: Seconds B lets a released host end by itself (it usually is ending) before SIGTERM.
RELEASE_GRACE: Final = 2.0
#: Seconds between SIGTERM and SIGKILL when B ends a host.
STOP_GRACE: Final = 5.0
#: Ended hosts B remembers for ``aif aims`` (and reports, the latest few, in offers).
FINISHED_KEPT: Final = 50
EXITS_REPORTED: Final = 20
#: What ``aif aim serve`` logs once it resolved its AIM type and dials the controller:
#: the sign B waits for before it tells A that the host runs.
_RUNNING_MARK: Final = "connecting to the controller at "
#: A host's output lines kept (for refusals and ``exited`` reports), and their length.
_OUTPUT_LINES, _OUTPUT_WIDTH = 8, 300


@dataclass(eq=False)
class _Hosted:
    """One host this controller started for a peer, running or ended."""

    request: PeerHost
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.time)
    output: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=_OUTPUT_LINES)
    )
    running: asyncio.Event = field(default_factory=asyncio.Event)
    status: int | None = None
    ended_at: float | None = None
    reader: asyncio.Task[None] | None = None
    reaper: asyncio.Task[None] | None = None
    stopper: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"AIM {self.request.name!r} of run {self.request.workflow} (pid {self.process.pid})"

    def last_words(self) -> str:
        return " | ".join(list(self.output)[-3:])

    def listing(self) -> dict[str, Any]:
        ended = self.status is not None
        return {
            "workflow": self.request.workflow,
            "aim": self.request.name,
            "type": self.request.type,
            "pid": self.process.pid,
            "controller": self.request.controller,
            "origin": self.request.origin,
            "state": f"exited {self.status}" if ended else "running",
            "since": self.ended_at if ended else self.started,
        }

    def exit_record(self) -> dict[str, Any]:
        return {
            "workflow": self.request.workflow,
            "aim": self.request.name,
            "pid": self.process.pid,
            "status": self.status,
            "output": self.output[-1] if self.output else "",
        }


class PeerHosts:
    """Hosts AIMs for peer controllers: the ``peer.*`` requests of a controller's API.

    ``offered``: the AIM types this controller hosts for others (``None``: any it can
    load). Hosts keep AIM storage under ``state_dir`` (this machine's). Create it
    anywhere; use it inside the event loop that serves the API.
    """

    def __init__(
        self,
        state_dir: Path,
        offered: Sequence[str] | None = None,
        identity: CurvePair | None = None,
    ) -> None:
        """``identity``: this controller's CURVE pair (secure profile), its hosts' too."""
        self.state_dir = Path(state_dir)
        self.identity = identity
        self.offered = list(offered) if offered is not None else None
        self.machine = socket.gethostname()
        self._running: dict[int, _Hosted] = {}
        self._finished: collections.deque[_Hosted] = collections.deque(maxlen=FINISHED_KEPT)
        self._offered_paths: set[str] | None = None
        self._closed = False

    async def handle(self, request: PeerOffer | PeerHost | PeerRelease) -> dict[str, Any]:
        """Answer one C2C request (raises ``ControllerError`` saying why and what to do)."""
        if isinstance(request, PeerOffer):
            return self._offer()
        if isinstance(request, PeerHost):
            return await self._host(request)
        return self._release(request)

    def listing(self) -> list[dict[str, Any]]:
        """The hosted AIMs, ended ones (the latest) first, then the running ones."""
        return [h.listing() for h in [*self._finished, *self._running.values()]]

    async def close(self) -> None:
        """End every host (SIGTERM, then SIGKILL) and wait for them: shutdown."""
        self._closed = True
        hosts = list(self._running.values())
        for hosted in hosts:
            self._stop_later(hosted, wait_first=0.0)
        await asyncio.gather(
            *(t for h in hosts for t in (h.stopper, h.reaper) if t is not None),
            return_exceptions=True,
        )

    # -- the requests ----------------------------------------------------------------

    def _offer(self) -> dict[str, Any]:
        exited = list(self._finished)[-EXITS_REPORTED:]
        return {
            "types": self.offered,
            "hosts": len(self._running),
            "machine": self.machine,
            "pid": os.getpid(),
            "exited": [h.exit_record() for h in exited],
        }

    async def _host(self, request: PeerHost) -> dict[str, Any]:
        # Printable and short: it is what a peer says about itself, and it goes to the log.
        who = "".join(c if c.isprintable() else "?" for c in request.origin[:200])
        who = who or "a controller that did not say who it is"
        log.info(
            "%s asks to host AIM %r (type %s) of run %s, registering at %s",
            who,
            request.name,
            request.type,
            request.workflow,
            request.controller,
        )
        if self._closed:
            raise ControllerError(f"the controller on {self.machine} is shutting down")
        await self._check_type(request.type)
        self._check_controller(request.controller)
        self._check_security(request)
        for old in list(self._running.values()):
            if (old.request.workflow, old.request.name) == (request.workflow, request.name):
                log.warning("%s is asked for again: ending the old host", old.label)
                self._stop_later(old, wait_first=0.0)
        hosted = await self._spawn(request)
        await self._until_running(hosted)
        log.info("hosting %s for %s", hosted.label, who)
        return {"pid": hosted.process.pid, "machine": self.machine}

    def _release(self, request: PeerRelease) -> dict[str, Any]:
        hosts = [
            h
            for h in self._running.values()
            if h.request.workflow == request.workflow and h.stopper is None
        ]
        for hosted in hosts:
            self._stop_later(hosted, wait_first=RELEASE_GRACE)
        if hosts:
            log.info(
                "run %s ended at its controller: releasing %d host(s)", request.workflow, len(hosts)
            )
        return {"released": len(hosts)}

    # -- checks ------------------------------------------------------------------------

    async def _check_type(self, type_text: str) -> None:
        """Refuse a type not offered (without loading it) or one this machine cannot load.

        Loading runs on a thread: an AIM module may import for seconds (torch), and
        this controller's loop must go on answering the peers that watch it meanwhile.
        """
        offered = self.offered
        if offered is not None and type_text not in offered:
            paths = await asyncio.to_thread(self._offered_class_paths)
            if type_text not in paths:
                raise ControllerError(
                    f"the controller on {self.machine} does not host AIM type {type_text!r} "
                    f"for peers (it offers: {', '.join(offered) or 'no types'}); ask a peer "
                    f"that offers it, or add --offer {type_text} where this controller is started"
                )
        try:
            await asyncio.to_thread(resolve_aim_type, type_text)
        except AIFError as exc:
            raise ControllerError(
                f"the controller on {self.machine} cannot load AIM type {type_text!r}: {exc}; "
                "install it there, or ask a peer that has it"
            ) from exc

    def _offered_class_paths(self) -> set[str]:
        """The class paths of the offered types, so ``pkg.mod:Class`` matches its name."""
        if self._offered_paths is None:
            paths: set[str] = set()
            for offered in self.offered or []:
                try:
                    paths.add(resolve_aim_type(offered).class_path())
                except AIFError as exc:
                    log.warning("offered AIM type %r cannot be loaded here: %s", offered, exc)
            self._offered_paths = paths
        return self._offered_paths

    def _check_controller(self, address: str) -> None:
        try:
            host = tcp_host(address)
        except ChannelError as exc:
            raise ControllerError(f"controller: {exc}") from exc
        if host in WILDCARD_HOSTS:
            raise ControllerError(
                f"controller: {address} means every interface of the asking machine, not an "
                f"address {self.machine} can dial; send the address it reaches you from"
            )

    def _check_security(self, request: PeerHost) -> None:
        """Both ends CURVE, or neither: a host never dials a secure AIM API in the clear."""
        if request.server_key is not None and self.identity is None:
            raise ControllerError(
                f"the controller at {request.controller} serves its AIM API with CURVE, but the "
                f"controller on {self.machine} runs the basic profile and has no identity to "
                "dial it with; start it with `aif controller start --profile secure`"
            )
        if request.server_key is None and self.identity is not None:
            raise ControllerError(
                f"the controller on {self.machine} runs the secure profile and its hosts dial "
                "only CURVE AIM APIs, but the asking controller sent no key; run it in the "
                "secure profile too (`aif controller start --profile secure`)"
            )

    # -- the host processes -------------------------------------------------------------

    async def _spawn(self, request: PeerHost) -> _Hosted:
        args = [
            "aim",
            "serve",
            f"--controller={request.controller}",
            f"--name={request.name}",
            f"--workflow={request.workflow}",
            f"--state-dir={self.state_dir}",
        ]
        if request.server_key is not None and self.identity is not None:
            args += [f"--server-key={request.server_key}", "--identity-stdin"]
        args += ["--", request.type]
        # SIGKILL when B dies: a host that tore down politely would tell A "interrupted by
        # SIGTERM" first, hiding the real cause (B is gone) that A's watchdog reports.
        argv = guarded_argv("aif.cli.main", args, death_signal=signal.SIGKILL)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if "--identity-stdin" in args else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C at B's terminal goes to B, which ends them
        )
        if process.stdin is not None:  # its identity: one line, the CURVE secret key
            assert self.identity is not None
            process.stdin.write(self.identity.secret + b"\n")
            with contextlib.suppress(ConnectionError):  # it died at once: the reaper says so
                await process.stdin.drain()
            process.stdin.close()
        hosted = _Hosted(request, process)
        self._running[process.pid] = hosted
        hosted.reader = asyncio.create_task(self._read(hosted), name=f"peer-host-{process.pid}")
        hosted.reaper = asyncio.create_task(self._reap(hosted), name=f"peer-reap-{process.pid}")
        return hosted

    async def _until_running(self, hosted: _Hosted) -> None:
        """Return once the host dials A; raise (and end it) when it exits or hangs first."""
        assert hosted.reaper is not None
        running = asyncio.create_task(hosted.running.wait())
        try:
            await asyncio.wait(
                {running, hosted.reaper},
                timeout=HOST_START_TIMEOUT,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            running.cancel()
        if hosted.running.is_set():
            return
        what = f"the host of AIM {hosted.request.name!r} on {self.machine}"
        if hosted.reaper.done():
            how = describe_exit(hosted.status if hosted.status is not None else 1)
            raise ControllerError(f"{what} ended ({how}) as it started: {hosted.last_words()}")
        self._stop_later(hosted, wait_first=0.0)
        raise ControllerError(
            f"{what} did not start within {HOST_START_TIMEOUT:g} s: {hosted.last_words()}"
        )

    async def _read(self, hosted: _Hosted) -> None:
        """Pass the host's output on to this controller's log, keeping its last lines."""
        stream = hosted.process.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the reader's limit: dropped, go on
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()[:_OUTPUT_WIDTH]
            hosted.output.append(text)
            if _RUNNING_MARK in text:
                hosted.running.set()
            log.info("[%s/%s] %s", hosted.request.workflow, hosted.request.name, text)

    async def _reap(self, hosted: _Hosted) -> None:
        status = await hosted.process.wait()
        if hosted.reader is not None:  # its last lines, unless a grandchild holds the pipe
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(hosted.reader), 1.0)
            hosted.reader.cancel()
        hosted.status, hosted.ended_at = status, time.time()
        self._running.pop(hosted.process.pid, None)
        self._finished.append(hosted)
        log.info("%s ended (%s)", hosted.label, describe_exit(status))

    def _stop_later(self, hosted: _Hosted, wait_first: float) -> None:
        """End a host in the background: let it go by itself, SIGTERM, then SIGKILL."""
        if hosted.stopper is None:
            hosted.stopper = asyncio.create_task(self._stop(hosted, wait_first))

    async def _stop(self, hosted: _Hosted, wait_first: float) -> None:
        reaper, process = hosted.reaper, hosted.process
        assert reaper is not None
        for sig, wait in ((None, wait_first), (signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
            if reaper.done():
                return
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            await asyncio.wait({reaper}, timeout=wait)
