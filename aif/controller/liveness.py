"""Liveness that tells busy from hung: what the controller reads besides heartbeats.

Heartbeats alone cannot tell an AIM that computes from one that hangs: a C call that
holds the GIL (aihwkit's tiles), or a machine whose cores are busy with other work,
silences a healthy host as surely as a deadlock does. So once an AIM has been silent
for half its ``heartbeat_timeout``, the controller also watches the CPU time its
process uses:

* a child process on this machine (``placement: process``, warm workers): read from
  ``/proc/PID/stat`` (user + system time of every thread, and the process state,
  ``T`` when it is stopped by SIGSTOP or a debugger);
* a remote host: the ``cpu`` its heartbeat thread reports while its event loop is
  blocked (``aif.host.heartbeat``); a host that sends nothing at all reports nothing.

At the timeout the verdict is ``busy`` when the process used at least
:data:`BUSY_SHARE` of a core over the last window (half the timeout): it is not
failed, and is judged again each window. Otherwise it is hung, and the verdict says
why: stopped, exited, no CPU used, or (nothing to read: an inproc AIM, a remote host
gone silent, a system without ``/proc``) that nothing more is known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: Share of one core an AIM must use over a window to count as busy. A deadlocked
#: Python process uses well under 1 % (its ZeroMQ and heartbeat threads); a computing
#: one on a machine loaded 50 times over still gets more.
BUSY_SHARE = 0.02
#: CPU seconds a window must show at least: the kernel counts in ticks of 10 ms.
MIN_CPU = 0.03


@dataclass(frozen=True)
class Sample:
    """The CPU time a process had used at a moment (``time.monotonic``)."""

    at: float
    cpu: float
    #: The state letter of ``/proc/PID/stat`` (``R``, ``S``, ``D``, ``T``, ``Z``...);
    #: None for what a remote host reports.
    state: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What the CPU time says of a silent AIM: ``wait`` for a full window, ``busy``, ``hung``."""

    kind: Literal["wait", "busy", "hung"]
    #: Why, in words that follow "no heartbeat for N s (limit M s)"; "" when unknown.
    why: str = ""
    #: Share of a core used over the window (busy and hung).
    share: float = 0.0


def read_process(pid: int, now: float) -> Sample | None:
    """The CPU time and state of process ``pid`` on this machine; None when unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return Sample(now, 0.0, "X") if Path("/proc/self/stat").exists() else None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
    except (IndexError, ValueError):
        return None
    return Sample(now, ticks / os.sysconf("SC_CLK_TCK"), fields[0])


class Liveness:
    """The CPU time samples of one AIM while it is silent."""

    def __init__(self) -> None:
        #: The start of the current window; None while heartbeats come.
        self.ref: Sample | None = None
        #: The last ``cpu`` a remote host reported, with when it came.
        self.reported: Sample | None = None
        #: Since when the AIM has been judged busy while silent (for the log).
        self.busy_since: float | None = None

    def reset(self) -> None:
        """Heartbeats came: forget the window."""
        self.ref = None
        self.busy_since = None

    def watch(self, sample: Sample | None) -> None:
        """Open a window at ``sample`` unless one is open."""
        if self.ref is None and sample is not None:
            self.ref = sample

    def judge(self, sample: Sample | None, window: float) -> Verdict:
        """The verdict at ``sample`` on a window of at least ``window`` seconds."""
        if sample is None:
            return Verdict("hung")
        if sample.state in ("T", "t"):
            return Verdict("hung", "no CPU used: it is stopped (SIGSTOP, or a debugger)")
        if sample.state in ("Z", "X"):
            return Verdict("hung", "its process has exited")
        ref = self.ref
        if ref is None or sample.at - ref.at < window:
            self.watch(sample)
            return Verdict("wait")
        span = sample.at - ref.at
        used = max(0.0, sample.cpu - ref.cpu)
        share = used / span
        if used >= max(MIN_CPU, BUSY_SHARE * span):
            self.ref = sample  # judged again after the next window
            return Verdict("busy", f"busy, using {share:.0%} of a core", share)
        if used == 0.0:
            why = f"no CPU used in the last {span:.1f} s: it is hung"
        else:
            why = f"only {share:.1%} of a core used in the last {span:.1f} s: it is hung"
        return Verdict("hung", why, share)
