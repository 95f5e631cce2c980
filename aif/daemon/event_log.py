"""Job events on their way to the state database, written in batches.

Events arrive one by one (a state change, an epoch's progress, a log line) and are
kept in a short buffer that one transaction writes every ``FLUSH_INTERVAL``: one commit
per event would cost the daemon a write per epoch of every job. ``aif logs`` flushes
before it reads, so it never misses what already happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aif.daemon.state import JobStore
from aif.errors import AIFError

log = logging.getLogger("aif.daemon")

#: Seconds between writes of buffered events to the database.
FLUSH_INTERVAL = 0.2

Row = tuple[str, float, str, str, dict[str, Any]]


class EventLog:
    """A write buffer in front of ``JobStore.add_events``."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._rows: list[Row] = []

    def add(
        self, job: str, topic: str, source: str, data: dict[str, Any], at: float | None = None
    ) -> None:
        """Queue one event of ``job`` for the next write."""
        self._rows.append((job, time.time() if at is None else at, topic, source, data))

    def flush(self) -> None:
        """Write what is buffered, in one transaction."""
        if self._rows:
            rows, self._rows = self._rows, []
            self._store.add_events(rows)

    async def run(self) -> None:
        """Flush every ``FLUSH_INTERVAL`` until cancelled; a failed write is logged, not fatal."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except AIFError as exc:
                log.error("events not written: %s", exc)
