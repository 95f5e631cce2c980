"""What the end of one attempt of a job means: final, queued again, or retried later.

A pure function of the facts (how the run ended, who ended it, the failing AIM's
restart policy, the workflow's ``on_restart``), so every rule is unit-tested without a
daemon:

* cancelled by the user → ``cancelled``; succeeded → ``succeeded``;
* ended because the daemon drains → ``queued`` again or ``interrupted``, as the
  workflow's ``on_restart`` says;
* stopped (not by the daemon) → ``stopped``;
* failed, the failing AIM has ``restart: on-failure`` and restarts left → ``queued``
  again after ``restart_backoff * 2**restarts`` seconds (the dispatcher then avoids the
  instance it failed on);
* failed otherwise → ``failed`` with the cause (and, after retries, how many).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aif.controller.plan import PlannedAIM
from aif.controller.run import RunState, WorkflowResult
from aif.daemon.records import JobState
from aif.workflow.policies import OnRestart


@dataclass(frozen=True)
class Outcome:
    """The job's next state; ``final`` ones get an end time, retries a ``not_before``."""

    state: JobState
    detail: str
    retry_in: float | None = None

    @property
    def final(self) -> bool:
        """True when the job ends here."""
        return self.state.final


def settle(
    run_state: RunState,
    error: str | None,
    *,
    cancelled: bool,
    draining: bool,
    on_restart: OnRestart,
    failed: PlannedAIM | None,
    restarts: int,
) -> Outcome:
    """The outcome of an attempt; ``restarts`` is how many times the job already ran again."""
    if cancelled:
        return Outcome(JobState.CANCELLED, "cancelled by the user")
    if run_state is RunState.SUCCEEDED:
        return Outcome(JobState.SUCCEEDED, "")
    if draining:
        if on_restart == "requeue":
            return Outcome(JobState.QUEUED, "re-queued: the controller was stopped while it ran")
        return Outcome(JobState.INTERRUPTED, "interrupted: the controller was stopped while it ran")
    if run_state is RunState.STOPPED:
        return Outcome(JobState.STOPPED, "stopped")
    cause = error or "failed"
    if failed is None or failed.restart != "on-failure":
        return Outcome(JobState.FAILED, cause)
    if restarts >= failed.max_restarts:
        return Outcome(JobState.FAILED, f"{cause} (gave up after {restarts} restarts)")
    delay = failed.restart_backoff * 2**restarts
    detail = (
        f"retrying in {delay:g} s (restart {restarts + 1} of {failed.max_restarts} "
        f"for AIM {failed.name!r}) after: {cause}"
    )
    return Outcome(JobState.QUEUED, detail, retry_in=delay)


def result_json(result: WorkflowResult) -> dict[str, Any]:
    """What a job keeps of an attempt: state, error, per-AIM results, output counts, and
    the Ray node each ``placement: ray`` AIM ran on (``nodes``)."""
    return {
        "state": result.state.value,
        "error": result.error,
        "seconds": round(result.seconds, 3),
        "results": result.results,
        "outputs": {port: len(records) for port, records in result.outputs.items()},
        "nodes": {aim: node.to_json() for aim, node in result.nodes.items()},
    }
