"""What a run of analog experiments produced, from its reporters' results: how many jobs
completed, failed, stopped or were rejected, and whether the run produced nothing.

An analog sweep's AIMs all end cleanly when every job fails, so the run's own state says
"succeeded"; ``aif run``'s exit status and the daemon's job state must not read that as
results. Both apply :func:`no_job_completed` to :func:`job_counts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aif.aims.analog.reporter import AnalogReporter

#: The job counts an analog reporter's result carries (``AnalogReporter``).
JOB_COUNTS = ("completed", "failed", "stopped", "rejected")


def job_counts(
    aim_classes: Mapping[str, type], results: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The analog jobs of a run by status, summed over its analog reporters' results
    (``folders``: where their reports are); None when no analog reporter reported.

    ``aim_classes``: each AIM's class by name (a resolved workflow's); ``results``: each
    AIM's result by name (a finished run's).
    """
    reports = [
        results[name]
        for name, cls in aim_classes.items()
        if issubclass(cls, AnalogReporter) and isinstance(results.get(name), Mapping)
    ]
    if not reports:
        return None
    counts: dict[str, Any] = {k: sum(int(r.get(k) or 0) for r in reports) for k in JOB_COUNTS}
    counts["folders"] = [str(r["folder"]) for r in reports if r.get("folder")]
    return counts


def no_job_completed(jobs: Mapping[str, Any] | None, run_ok: bool) -> str | None:
    """Why a run that ended well still failed: its reporters saw no job complete, and
    some failed or were rejected (None otherwise, and for a run that failed anyway)."""
    if not run_ok or jobs is None or jobs["completed"]:
        return None
    if not jobs["failed"] and not jobs["rejected"]:
        return None  # nothing to run, or every job stopped: the run says so itself
    said = f"{jobs['failed']} failed, {jobs['rejected']} rejected"
    if jobs["stopped"]:
        said += f", {jobs['stopped']} stopped"
    where = "".join(f"; see {folder}/results.json" for folder in jobs["folders"])
    return f"no job completed: {said}{where}"
