"""Parsing submitted workflows in a child process, for the daemon's checks.

The daemon checks a submitted workflow in a worker thread, but a thread shares the
interpreter: a hostile YAML text (an alias bomb, a million values) keeps the GIL busy
building and then freeing a million objects, and the daemon's loop waited up to 0.6 s
to answer a ``ping``; the daemon also kept the memory such a text made it allocate
(591 MiB after a handful of bombs). Here the YAML (and every ``--set`` value) is parsed
in a child, ``python -m aif.workflow.parse_worker``, which answers with the plain data
and the line of every key, or with the problems; the daemon's thread builds the
``Workflow`` from that data. A parse that outlives its time limit is ended by killing
the child, and a child whose memory grew past ``MAX_RSS_MIB`` is replaced.

Frames on the child's stdin and stdout: a 4-byte big-endian length, then one msgpack
map (no pickle); the data of YAML (maps, lists, strings, numbers, booleans, null) is
what msgpack carries, and the marks travel as ``[path, line, column]`` triples.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any, Final

from aif.communication import frames
from aif.errors import MalformedMessage, WorkflowError
from aif.workflow.loader import parse_text
from aif.workflow.model import SourceMap

#: Largest frame either side accepts: a request is at most the 1 MiB text and its
#: ``--set`` values; a reply at most the data of a million values.
MAX_FRAME: Final = 256 << 20
#: Resident MiB of the child after a parse past which it is replaced.
MAX_RSS_MIB: Final = 256.0
#: Address space the child may map (a parse that needs more fails: out of memory).
MAX_ADDRESS_SPACE: Final = 2 << 30


# -- the child -------------------------------------------------------------------------


def _read(stream: Any) -> dict[str, Any] | None:
    body = frames.read_body(stream, MAX_FRAME, "parse worker")
    return None if body is None else frames.decode(body, "parse worker")


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    text, source, overrides = request.get("text"), request.get("source"), request.get("overrides")
    if not (
        isinstance(text, str)
        and isinstance(source, str)
        and isinstance(overrides, list)
        and all(isinstance(o, str) for o in overrides)
    ):
        return {"ok": False, "message": "malformed parse request", "problems": []}
    try:
        data, source_map = parse_text(text, source, overrides)
    except WorkflowError as exc:
        return {"ok": False, "message": str(exc).split("\n", 1)[0], "problems": exc.problems}
    marks = [[list(loc), line, column] for loc, (line, column) in source_map.marks.items()]
    return {"ok": True, "data": data, "marks": marks, "rss_mib": _rss_mib()}


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def main() -> int:
    """``python -m aif.workflow.parse_worker``: answer parse requests until end of file."""
    # A bound on what a hostile text can make this process allocate.
    resource.setrlimit(resource.RLIMIT_AS, (MAX_ADDRESS_SPACE, MAX_ADDRESS_SPACE))
    inbox = os.fdopen(os.dup(0), "rb", buffering=0)
    outbox = os.dup(1)
    os.dup2(2, 1)  # whatever prints goes to stderr, never into a frame
    while (request := _read(inbox)) is not None:
        os.write(outbox, frames.encode(_answer(request)))
    return 0


# -- the daemon's side -----------------------------------------------------------------


class ParseProcess:
    """The child that parses for the daemon's check threads, one request at a time."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._retire = False

    def parse(self, text: str, source: str, overrides: Sequence[str]) -> tuple[Any, SourceMap]:
        """:func:`~aif.workflow.loader.parse_text` in the child (raises ``WorkflowError``,
        also for a parse that
        takes longer than ``timeout``: the child is killed then, and started anew)."""
        request = frames.encode({"text": text, "source": source, "overrides": list(overrides)})
        with self._lock:
            proc = self._child()
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(request)
                proc.stdin.flush()
                reply = self._reply(proc, source)
            except (OSError, MalformedMessage) as exc:
                self._kill()
                raise WorkflowError(
                    f"{source}: the workflow could not be checked ({exc}); submit it again"
                ) from exc
        if not reply.get("ok"):
            problems = [str(p) for p in reply.get("problems") or []]
            raise WorkflowError(str(reply.get("message") or f"invalid workflow {source}"), problems)
        if float(reply.get("rss_mib") or 0.0) > MAX_RSS_MIB:
            self._retire = True
        marks = {tuple(loc): (int(line), int(column)) for loc, line, column in reply["marks"]}
        return reply["data"], SourceMap(source, marks)

    def close(self) -> None:
        """End the child now, even mid-parse (that parse then fails, saying so)."""
        if self._lock.acquire(blocking=False):
            try:
                self._kill()
            finally:
                self._lock.release()
        elif (proc := self._proc) is not None:
            with contextlib.suppress(OSError):
                proc.kill()  # the thread that parses reaps it

    def _child(self) -> subprocess.Popen[bytes]:
        if self._retire:
            self._retire = False
            self._kill()
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "aif.workflow.parse_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._proc

    def _reply(self, proc: subprocess.Popen[bytes], source: str) -> dict[str, Any]:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
        if not ready:
            self._kill()
            raise WorkflowError(
                f"{source}: checking the workflow took more than {self.timeout:g} s; "
                "simplify it, or move bulk data to a data file"
            )
        reply = _read(proc.stdout)
        if reply is None:
            code = proc.wait()
            self._proc = None
            raise WorkflowError(
                f"{source}: the workflow could not be checked: its parser ended (exit status "
                f"{code}, out of memory?); simplify it, or move bulk data to a data file"
            )
        return reply

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


if __name__ == "__main__":
    sys.exit(main())
