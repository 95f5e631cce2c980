"""The jobs of a state directory while no daemon runs: ``aif ps``, ``status``, ``logs``.

The jobs and their events are in SQLite (:mod:`aif.daemon.state`), so a user can still
see what was queued, what ran and what it logged after the daemon stopped or crashed.
:class:`OfflineJobs` answers the same calls as :class:`aif.daemon.client.Client` (those
three) from the database opened read-only: no AIMs are running, nothing is changed, and
a daemon started later finds the file as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from aif.daemon.records import EventRow, JobRecord, JobState, JobStatus
from aif.daemon.state import JobStore
from aif.errors import DaemonError

#: Events read per page (the daemon's logs pages are this size too).
_PAGE = 1000
#: Ended jobs listed by default, as the daemon lists them.
_RECENT_ENDED = 20


class OfflineJobs:
    """Read-only answers from ``STATE_DIR/controller.db``; use it as a context manager."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / JobStore.FILE_NAME
        self._store = JobStore.read_only(self.path)

    def __enter__(self) -> OfflineJobs:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._store.close()

    def jobs(
        self, states: Sequence[str] | None = None, limit: int | None = None
    ) -> list[JobRecord]:
        """As ``Client.jobs``: these states, or every unfinished job and the latest ended."""
        if states is not None:
            return self._store.list([JobState(s) for s in states], limit)
        open_ = [s for s in JobState if not s.final]
        ended = self._store.list([s for s in JobState if s.final], _RECENT_ENDED, True)
        records = self._store.list(open_, limit) + ended[::-1]
        return sorted(records, key=lambda r: r.seq)

    def status(self, job: str) -> JobStatus:
        """As ``Client.status``; no AIM runs while no daemon does."""
        return JobStatus(job=self._store.get(self._store.resolve_id(job)))

    def logs(self, job: str, *, after: int = 0, follow: bool = False) -> Iterator[EventRow]:
        """As ``Client.logs``; ``follow`` needs a daemon (nothing can be added here)."""
        if follow:
            raise DaemonError(
                "no daemon runs on this state directory, so nothing new can be logged; "
                "leave out --follow, or start the daemon (aif controller start)"
            )
        job_id = self._store.resolve_id(job)
        while True:
            rows = self._store.events(job_id, after, _PAGE)
            yield from rows
            if len(rows) < _PAGE:
                return
            after = rows[-1].seq
