"""A warm worker: one long-lived process that hosts a fresh AIM for each job it is given.

The daemon's ``placement: process`` AIMs that opt in (a class attribute
``warm_modules``, the heavy modules they need) are hosted by warm workers instead of a
fresh ``python -m aif.host`` per job, so torch and aihwkit are imported once per
worker, not once per job. The controller's side (the pool, which starts, hands out,
recycles and replaces workers) is :mod:`aif.controller.launchers.warm`; this module is
the worker and the small vocabulary both sides speak.

Why a preloaded process and not ``fork`` (``multiprocessing``' forkserver): a job's
host must be the very host every placement runs (``AIMHost``: the AIM API, heartbeats,
lifelines, the control lane), in a process the controller can signal, kill and watch
like any child; forking a process that has imported torch (OpenMP and CUDA state,
threads) is unsafe, and forkserver children would inherit a parent that is not the
controller, which breaks the host's parent lifeline. A worker is a plain child of the
controller that runs ``serve_host`` once per job, in a fresh event loop and a fresh
ZeroMQ context::

    pool (controller)                                 worker (python -m aif.host warm)
      spawn ──────────────────────────────────────►   import the preload modules once
            ◄──────── ready {pid, modules, seconds}
      serve {controller, aim, workflow, modules} ─►   reset the process-wide state,
                                                      serve_host(...) as a child host:
                                                      hello, setup, ... bye (AIM API)
            ◄──── served {status, rss_mib, clean, note}
      serve ... (the next job) ───────────────────►   ...
      close its stdin (retire) ───────────────────►   exit 0

Frames travel on the worker's stdin and its original stdout, each a 4-byte big-endian
length and one msgpack map (no pickle). The worker points its own fd 1 at stderr before
anything else runs, so whatever an AIM prints cannot corrupt a frame. End of file on
stdin means "exit": the pool retires a worker by closing it, and a controller that dies,
even by ``kill -9``, closes it too.

A clean AIM per job: a new ``AIMHost``, ``HostRuntime`` (storage, channels, event
stream) and AIM instance made from the job's own ``setup`` (class, parameters, storage
grant), a new event loop (tasks a job leaves are cancelled with it) and a new ZeroMQ
context. Before each job the worker reseeds Python's, numpy's and torch's global
generators from fresh entropy (as a fresh process would be), and puts back torch's
thread count, default dtype and grad mode, ``sys.path``, ``os.environ`` and the working
directory as they were after the preload; the preload itself is frozen out of the
garbage collector's sight (``gc.freeze``), so the collection after each job is cheap.
What it cannot undo it reports: a job that
leaves Python threads running is ``clean: false``, and the pool retires the worker.
Modules stay imported (that is the point); an AIM that keeps state in module globals
must not opt in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import importlib
import logging
import os
import random
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, Final, Literal

import msgpack

from aif.errors import MalformedMessage

log = logging.getLogger("aif.host.warm")

#: Largest frame either side accepts (the messages are a few hundred bytes).
MAX_FRAME: Final = 1 << 20
_HEADER = struct.Struct(">I")
#: Seconds a worker waits for the threads a job started to end before it says unclean.
THREAD_GRACE: Final = 2.0


@dataclass(frozen=True)
class WorkerReady:
    """worker → pool, once: the preload is imported; the worker takes jobs."""

    pid: int
    modules: list[str]
    seconds: float
    op: Literal["ready"] = "ready"


@dataclass(frozen=True)
class ServeAIM:
    """pool → worker: host AIM ``aim`` of run ``workflow`` for the controller there."""

    controller: str
    aim: str
    workflow: str
    #: Heavy modules the AIM type declares; imported first if the worker lacks them.
    modules: list[str] = field(default_factory=list)
    op: Literal["serve"] = "serve"


@dataclass(frozen=True)
class AIMServed:
    """worker → pool, after each job: how its host ended, and what it left behind."""

    status: int
    rss_mib: float
    #: False when the job left something the worker cannot undo (running threads).
    clean: bool = True
    note: str = ""
    op: Literal["served"] = "served"


WorkerMessage = WorkerReady | ServeAIM | AIMServed
_KINDS: dict[str, type[WorkerMessage]] = {
    "ready": WorkerReady,
    "serve": ServeAIM,
    "served": AIMServed,
}
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (int,),
    "modules": (list,),
    "seconds": (float, int),
    "controller": (str,),
    "aim": (str,),
    "workflow": (str,),
    "status": (int,),
    "rss_mib": (float, int),
    "clean": (bool,),
    "note": (str,),
}


def pack(message: WorkerMessage) -> bytes:
    """One frame: length, then the message as a msgpack map."""
    body: bytes = msgpack.packb(asdict(message), use_bin_type=True)
    return _HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    """The body length a frame header announces (raises ``MalformedMessage`` if too long)."""
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise MalformedMessage(f"warm worker frame of {length} bytes (limit {MAX_FRAME})")
    return int(length)


def unpack(body: bytes) -> WorkerMessage:
    """A frame's body as its message; ``MalformedMessage`` names what is wrong."""
    try:
        data = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedMessage(f"warm worker frame is not msgpack: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessage(f"warm worker frame is not a map: {type(data).__name__}")
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
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    body = stream.read(frame_length(header))
    return unpack(body)


def rss_mib() -> float:
    """This process's resident memory in MiB (0.0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _import_all(modules: Sequence[str]) -> list[str]:
    loaded = []
    for name in modules:
        importlib.import_module(name)
        loaded.append(name)
    return loaded


@dataclass
class ProcessState:
    """What the worker puts back before each job: the process-wide state a job may change."""

    cwd: str
    path: list[str]
    environ: dict[str, str]
    torch_threads: int | None = None
    torch_dtype: Any = None

    @classmethod
    def capture(cls) -> ProcessState:
        state = cls(os.getcwd(), list(sys.path), dict(os.environ))
        torch = sys.modules.get("torch")
        if torch is not None:
            state.torch_threads = torch.get_num_threads()
            state.torch_dtype = torch.get_default_dtype()
        return state

    def restore(self) -> None:
        """Back to the state after the preload, with fresh random generators."""
        with contextlib.suppress(OSError):
            os.chdir(self.cwd)
        sys.path[:] = self.path
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        random.seed()
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.seed()  # a fresh nondeterministic seed on every device, like a new process
            torch.set_grad_enabled(True)
            if self.torch_threads is not None:
                torch.set_num_threads(self.torch_threads)
            if self.torch_dtype is not None:
                torch.set_default_dtype(self.torch_dtype)


def _freeze() -> None:
    """Move what the preload made out of the collector's sight (``gc.freeze``, as a
    fork server does before forking): with torch imported a full collection takes about
    0.3 s, paid after every job (and in the job's own collections) otherwise."""
    gc.collect()
    gc.freeze()


def _release_memory() -> None:
    """Collect garbage and hand freed heap back to the system (glibc), after each job."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _leftover_threads(before: set[int]) -> list[str]:
    """Python threads a job started that are still running after ``THREAD_GRACE``."""
    deadline = time.monotonic() + THREAD_GRACE
    while True:
        left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not left or time.monotonic() >= deadline:
            return [t.name for t in left]
        left[0].join(max(0.0, deadline - time.monotonic()))


def serve_jobs(inbox: BinaryIO, outbox: int, preload: Sequence[str], pid: int | None = None) -> int:
    """The worker's life: preload, say ready, then one host per ``serve`` until end of file."""
    from aif.host.serve import serve_host

    started = time.monotonic()
    loaded = set(_import_all(preload))
    _freeze()
    baseline = ProcessState.capture()
    ready = WorkerReady(pid or os.getpid(), sorted(loaded), time.monotonic() - started)
    os.write(outbox, pack(ready))
    while True:
        message = _read_frame(inbox)
        if message is None:
            return 0
        if not isinstance(message, ServeAIM):
            raise MalformedMessage(f"warm worker: expected 'serve', got {message.op!r}")
        missing = [m for m in message.modules if m not in loaded]
        if missing:
            loaded.update(_import_all(missing))
            _freeze()
            baseline = ProcessState.capture()
        baseline.restore()
        threads = {t.ident for t in threading.enumerate() if t.ident is not None}
        status = asyncio.run(
            serve_host(message.controller, message.aim, message.workflow, None, watch_parent=True)
        )
        left = _leftover_threads(threads)
        _release_memory()
        note = f"the job left threads running: {', '.join(left)}" if left else ""
        served = AIMServed(status=status, rss_mib=rss_mib(), clean=not left, note=note)
        os.write(outbox, pack(served))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aif.host warm`` (a warm worker the controller's pool starts)."""
    parser = argparse.ArgumentParser(prog="python -m aif.host warm")
    parser.add_argument(
        "--preload", default="", help="comma-separated modules to import before the first job"
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
    preload = [m for m in args.preload.split(",") if m]
    try:
        return serve_jobs(inbox, outbox, preload)
    except MalformedMessage as exc:
        log.error("%s", exc)
        return 2
    except BrokenPipeError:
        return 0  # the pool went away between two jobs
