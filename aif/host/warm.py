"""A warm worker: one long-lived process with the heavy modules imported, which forks
a fresh host for each AIM it is given.

``placement: process`` AIMs that opt in (a class attribute ``warm_modules``, the heavy
modules they need) are hosted by forks of a warm worker instead of a fresh
``python -m aif.host``, so torch and aihwkit are imported once per worker, not once per
AIM: once per daemon (until the worker is replaced) and once per ``aif run``, where the
validator's aihwkit check and the simulator fork from the same preloaded process. The
controller's side (the pool, which starts, hands out and replaces workers) is
:mod:`aif.controller.launchers.warm`; this module is the worker and the small
vocabulary both sides speak::

    pool (controller)                                 worker (python -m aif.host warm)
      spawn ──────────────────────────────────────►   import the preload modules once,
            ◄──────── ready {pid, modules, seconds}   freeze them out of the GC's sight
      serve {job, controller, aim, workflow} ─────►   fork: the child reseeds its random
            ◄──────────────── forked {job, pid}       generators and runs serve_host(...),
      serve ... (more AIMs, concurrently) ────────►   a child host like any other (hello,
                                                      setup, ... bye over the AIM API)
            ◄── served {job, status, rss_mib, ...}    the child exited; the worker reaps it
      close its stdin (retire) ───────────────────►   stop live children, exit 0

Why fork: a fork is a fresh process, so nothing one job does (module globals, torch's
seeds and threads, leftover threads, leaked memory) can reach the next, and it costs
milliseconds where importing torch and aihwkit costs seconds. Forking a process that
has imported torch is safe as long as that process never ran torch's thread pools,
created a CUDA context (the worker asks torch about GPUs through NVML only, with
``PYTORCH_NVML_BASED_CUDA_CHECK``) or started threads: the worker only imports, and it
is a single thread that waits on its stdin and on one pidfd per child (``selectors``).
A child's host watches its parent, the worker (``watch_parent``); the worker, whose
stdin the controller holds, stops its children when the controller is gone.

Frames travel on the worker's stdin and its original stdout, each a 4-byte big-endian
length and one msgpack map (no pickle). The worker points its own fd 1 at stderr before
anything else runs, so whatever an AIM prints cannot corrupt a frame. End of file on
stdin means "exit": the pool retires a worker by closing it, and a controller that dies,
even by ``kill -9``, closes it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import importlib.util
import logging
import os
import random
import selectors
import signal
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, Final, Literal

from aif.communication import frames
from aif.errors import MalformedMessage

log = logging.getLogger("aif.host.warm")

#: Largest frame either side accepts (the messages are a few hundred bytes).
MAX_FRAME: Final = 1 << 20
#: Seconds the children of a retiring worker get to end after SIGTERM, before SIGKILL.
CHILD_GRACE: Final = 5.0


@dataclass(frozen=True)
class WorkerReady:
    """worker → pool, once: the preload is imported; the worker takes AIMs."""

    pid: int
    modules: list[str]
    seconds: float
    op: Literal["ready"] = "ready"


@dataclass(frozen=True)
class ServeAIM:
    """pool → worker: fork a host for AIM ``aim`` of run ``workflow``; ``job`` names it."""

    job: int
    controller: str
    aim: str
    workflow: str
    #: Heavy modules the AIM type declares; the worker imports those it lacks first.
    modules: list[str] = field(default_factory=list)
    op: Literal["serve"] = "serve"


@dataclass(frozen=True)
class AIMForked:
    """worker → pool: the host of ``job`` runs as process ``pid`` (the worker's child)."""

    job: int
    pid: int
    op: Literal["forked"] = "forked"


@dataclass(frozen=True)
class AIMServed:
    """worker → pool: the host of ``job`` exited, with ``status`` (-N: killed by signal N)."""

    job: int
    status: int
    #: The host's peak resident memory, MiB.
    rss_mib: float
    #: The worker's own resident memory now, MiB (it grows only by what it imports).
    worker_rss_mib: float = 0.0
    op: Literal["served"] = "served"


WorkerMessage = WorkerReady | ServeAIM | AIMForked | AIMServed
_KINDS: dict[str, type[WorkerMessage]] = {
    "ready": WorkerReady,
    "serve": ServeAIM,
    "forked": AIMForked,
    "served": AIMServed,
}
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "job": (int,),
    "pid": (int,),
    "modules": (list,),
    "seconds": (float, int),
    "controller": (str,),
    "aim": (str,),
    "workflow": (str,),
    "status": (int,),
    "rss_mib": (float, int),
    "worker_rss_mib": (float, int),
}


def pack(message: WorkerMessage) -> bytes:
    """One frame: length, then the message as a msgpack map."""
    return frames.encode(asdict(message))


def frame_length(header: bytes) -> int:
    """The body length a frame header announces (raises ``MalformedMessage`` if too long)."""
    return frames.body_length(header, MAX_FRAME, "warm worker")


def unpack(body: bytes) -> WorkerMessage:
    """A frame's body as its message; ``MalformedMessage`` names what is wrong."""
    data = frames.decode(body, "warm worker")
    kind = _KINDS.get(str(data.get("op")))
    if kind is None:
        raise MalformedMessage(f"warm worker frame has unknown op {data.get('op')!r}")
    fields = {k: v for k, v in data.items() if k != "op"}
    for key, value in fields.items():
        wanted = _FIELD_TYPES.get(key)
        if wanted is None or not _is(value, wanted):
            raise MalformedMessage(f"warm worker {data['op']!r} frame: bad field {key!r}")
    if "modules" in fields and not all(isinstance(m, str) for m in fields["modules"]):
        raise MalformedMessage("warm worker frame: modules must be strings")
    try:
        return kind(**fields)
    except TypeError as exc:
        raise MalformedMessage(f"warm worker {data['op']!r} frame: {exc}") from exc


def _is(value: Any, wanted: tuple[type, ...]) -> bool:
    """``isinstance``, except that a bool is not an int here (msgpack keeps them apart)."""
    if isinstance(value, bool):
        return bool in wanted
    return isinstance(value, wanted)


# -- the worker ------------------------------------------------------------------------


def _read_frame(stream: BinaryIO) -> WorkerMessage | None:
    """The next frame from the pool, or None at end of file (retired, or the pool died)."""
    body = frames.read_body(stream, MAX_FRAME, "warm worker")
    return None if body is None else unpack(body)


def rss_mib() -> float:
    """This process's resident memory in MiB (0.0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Preload:
    """What the worker imported and warmed up, and how to undo the warm-up's one setting.

    ``warm_modules`` entries are module names (imported) or ``module:function`` (the
    module imported, then the function called once: a warm-up, see
    :mod:`aif.aims.analog.warm_up`). Warm-ups run with torch held to one thread, so no
    OpenMP team exists when the worker forks; each fork gets torch's own thread count
    back. A warm-up that leaves a Python thread running is refused: a fork would carry
    a lock that thread held, and not the thread.
    """

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        #: torch's thread count before the first warm-up held it to one (None: untouched).
        self.torch_threads: int | None = None

    def add(self, entries: Sequence[str]) -> None:
        """Import (and warm up) what is not loaded yet, then freeze it out of the GC's sight."""
        new = [entry for entry in entries if entry not in self.loaded]
        if not new:
            return
        for entry in new:
            module_name, _, function = entry.partition(":")
            module = importlib.import_module(module_name)
            if function:
                self._warm_up(entry, getattr(module, function))
            self.loaded.add(entry)
        gc.collect()
        # What the preload made is never collected: out of the collector's sight, a fork's
        # collections neither walk it (0.3 s with torch) nor write to its pages.
        gc.freeze()

    def _warm_up(self, entry: str, function: Any) -> None:
        if self.torch_threads is None and importlib.util.find_spec("torch") is not None:
            import torch

            self.torch_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        before = set(threading.enumerate())
        started = time.monotonic()
        try:
            function()
        except Exception:  # the forks start cold then; nothing else is lost
            log.exception("warm-up %s failed; AIMs forked from this worker start cold", entry)
        left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if left:
            raise RuntimeError(f"warm-up {entry} left threads running ({', '.join(left)})")
        log.info("warm-up %s took %.2f s", entry, time.monotonic() - started)

    def restore(self) -> None:
        """In a fork: torch's thread count as it was before the warm-ups."""
        if self.torch_threads is not None:
            import torch

            torch.set_num_threads(self.torch_threads)


def reseed() -> None:
    """Fresh entropy for Python's, numpy's and torch's generators, as a new process has:
    a fork inherits its parent's generator states, which every child would share."""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()


def _host_child(message: ServeAIM, inherited: Sequence[int], preload: Preload) -> int:
    """In the fork: drop the worker's descriptors, then be an ordinary child host."""
    from aif.host.serve import configure_logging, serve_host

    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _disarm_inherited_finalizers()
    configure_logging(message.aim, force=True)
    # Modules the worker lacks (a type it was not started for) are this fork's own work:
    # a module that fails to import then fails this AIM, never the worker and its forks.
    preload.add(message.modules)
    preload.restore()
    reseed()
    return asyncio.run(
        serve_host(message.controller, message.aim, message.workflow, None, watch_parent=True)
    )


def _disarm_inherited_finalizers() -> None:
    """In a fork: the worker's ``weakref.finalize`` callbacks are not this process's to
    run at exit (they would remove the worker's files, and torch's 170 op-library
    finalizers alone cost 40 ms an exit). Those the host registers itself still run.

    ``finalize._registry`` is private (nothing public lists the live finalizers);
    ``atexit`` is the public switch of each.
    """
    for finalizer in list(getattr(weakref.finalize, "_registry", {})):
        finalizer.atexit = False


class ForkingWorker:
    """The worker's state: its frames out, the selector over stdin and its children."""

    def __init__(self, inbox: BinaryIO, outbox: int, preload: Preload) -> None:
        self.inbox = inbox
        self.preload = preload
        self.outbox = outbox
        self.selector = selectors.DefaultSelector()
        self.selector.register(inbox.fileno(), selectors.EVENT_READ, None)
        #: pidfd → (job, pid) of each live child.
        self.children: dict[int, tuple[int, int]] = {}

    def send(self, message: WorkerMessage) -> None:
        os.write(self.outbox, pack(message))

    def fork(self, message: ServeAIM) -> None:
        """Start the host of ``message`` in a child; say its pid."""
        inherited = [self.inbox.fileno(), self.outbox, self.selector.fileno(), *self.children]
        pid = os.fork()
        if pid == 0:  # the child: never returns into the worker's loop
            from aif.fast_exit import exit_now

            status = 1
            try:
                status = _host_child(message, inherited, self.preload)
            except BaseException:
                log.exception("AIM %r: its forked host failed", message.aim)
            exit_now(status)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (message.job, pid)
        self.selector.register(pidfd, selectors.EVENT_READ, pidfd)
        self.send(AIMForked(job=message.job, pid=pid))

    def reap(self, pidfd: int) -> None:
        """A child exited: reap it and say how it ended."""
        job, pid = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, wait_status, usage = os.wait4(pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        self.send(
            AIMServed(
                job=job,
                status=status,
                rss_mib=usage.ru_maxrss / 1024,
                worker_rss_mib=rss_mib(),
            )
        )

    def stop_children(self, grace: float = CHILD_GRACE) -> None:
        """Retired (or the controller is gone): SIGTERM each live child, SIGKILL after ``grace``."""
        pids = [pid for _, pid in self.children.values()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            for key, _ in self.selector.select(max(0.0, deadline - time.monotonic())):
                if key.data is not None:
                    self._reap_quietly(key.data)
        for pidfd, (_, pid) in list(self.children.items()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._reap_quietly(pidfd)

    def _reap_quietly(self, pidfd: int) -> None:
        with contextlib.suppress(OSError):
            self.reap(pidfd)  # the pool may be gone: nobody reads the report


def serve_jobs(inbox: BinaryIO, outbox: int, preload: Sequence[str], pid: int | None = None) -> int:
    """The worker's life: preload, say ready, then fork a host per ``serve`` until end of file."""
    started = time.monotonic()
    loaded = Preload()
    loaded.add(preload)
    worker = ForkingWorker(inbox, outbox, loaded)
    worker.send(WorkerReady(pid or os.getpid(), sorted(loaded.loaded), time.monotonic() - started))
    try:
        while True:
            for key, _ in worker.selector.select():
                if key.data is not None:
                    worker.reap(key.data)
                    continue
                message = _read_frame(inbox)
                if message is None:
                    return 0
                if not isinstance(message, ServeAIM):
                    raise MalformedMessage(f"warm worker: expected 'serve', got {message.op!r}")
                worker.fork(message)  # what the worker lacks, the fork imports itself
    finally:
        worker.stop_children()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aif.host warm`` (a warm worker the controller's pool starts)."""
    parser = argparse.ArgumentParser(prog="python -m aif.host warm")
    parser.add_argument(
        "--preload", default="", help="comma-separated modules to import before the first AIM"
    )
    args = parser.parse_args(argv)
    # Frames go out on the original stdout; fd 1 becomes stderr, so prints cannot break them.
    outbox = os.dup(1)
    os.dup2(2, 1)
    inbox = os.fdopen(os.dup(0), "rb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    from aif.host.serve import configure_logging

    configure_logging("warm worker")
    # torch.cuda.is_available() (a warm-up's simulator asks it) would otherwise start the
    # CUDA driver here, and a fork of a process that did cannot use the GPU. Asked
    # through NVML, the question leaves the driver alone; each fork starts CUDA itself.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    preload = [m for m in args.preload.split(",") if m]
    try:
        return serve_jobs(inbox, outbox, preload)
    except MalformedMessage as exc:
        log.error("%s", exc)
        return 2
    except BrokenPipeError:
        return 0  # the pool went away
