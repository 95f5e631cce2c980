"""Live progress and the closing summary of ``aif run`` (rich).

AIMs publish progress events with whatever fields suit them; two are understood
specially: ``step`` and ``total`` drive a bar. Every other field is shown as
``key=value`` beside it, so an epoch loop reporting ``step=3, total=10, loss=0.21``
needs nothing more. In results, a value that is itself a mapping (a simulator's
``{job: {status, accuracy, acc@1y, ...}}``) gets a table of its own, one row per key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from aif.communication.event_payloads import (
    AIMStateChanged,
    LogLine,
    ProgressUpdate,
    RunStateChanged,
    Unrecognized,
)
from aif.communication.events import Event
from aif.controller.run import WorkflowResult


def _fmt(value: Any) -> str:
    """A value for a table cell, escaped: ``job[pcm]`` is a name, not rich markup."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return escape(f"[{len(value)} items]")
    text = str(value)
    if "/" not in text and len(text) > 40:  # a path is never shortened: people copy it
        text = text[:37] + "..."
    return escape(text)


def _rows_table(rows: dict[str, dict[str, Any]]) -> Table:
    """One row per key (a job), by name, one column per field any row has, first seen first.

    By name, so a deployed job (``cnn@chip``) follows the job it was trained in.
    """
    rows = dict(sorted(rows.items()))
    columns: list[str] = []
    for data in rows.values():
        columns.extend(k for k in data if k not in columns)
    table = Table(title="jobs")
    table.add_column("job", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="left" if column in ("status", "error") else "right")
    for key, data in rows.items():
        table.add_row(escape(key), *(_fmt(data[c]) if c in data else "" for c in columns))
    return table


def result_files(results: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The files each AIM reported writing (a result's ``files``, joined to its ``folder``
    when relative): where a run's records went (``record-file``, ``analog-reporter``)."""
    out: dict[str, list[str]] = {}
    for aim, data in sorted(results.items()):
        files, folder = data.get("files"), data.get("folder")
        if not isinstance(files, list):
            continue
        base = Path(folder) if isinstance(folder, str) else None
        out[aim] = [
            str(base / str(f)) if base is not None and not Path(str(f)).is_absolute() else str(f)
            for f in files
        ]
    return out


#: The loggers of AIMs (``AIM.log``) are children of this one: ``aif.aim.<name>``.
AIM_LOGGER = "aif.aim"


class _AIMLogHandler(logging.Handler):
    """Prints an AIM's log lines through the live display, prefixed by the AIM's name."""

    def __init__(self, console: Console, level: int) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            aim = record.name.removeprefix(AIM_LOGGER + ".")
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
            style = "yellow" if record.levelno >= logging.WARNING else "default"
            self.console.print(f"  [bold]{escape(aim)}[/bold]: [{style}]{escape(text)}[/{style}]")
        except Exception:
            self.handleError(record)


class RunDisplay:
    """Turns controller events into a live view, then prints a summary table."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._progress = Progress(
            TextColumn("[bold]{task.fields[aim]:<14}"),
            BarColumn(),
            TextColumn("{task.fields[count]:>9}"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=quiet,
        )
        self._tasks: dict[str, TaskID] = {}

    @contextlib.contextmanager
    def aim_logs(self, level: int = logging.INFO) -> Iterator[None]:
        """While inside, the log lines of the AIMs in this process (``AIM.log``) at
        ``level`` and above are printed above the progress bars as ``  NAME: message``.

        Quiet: nothing changes (warnings still reach stderr through the root logger).
        """
        if self.quiet:
            yield
            return
        logger = logging.getLogger(AIM_LOGGER)
        handler = _AIMLogHandler(self._progress.console, level)
        saved = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # once here, not again through the root logger
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]

    def __enter__(self) -> RunDisplay:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def on_event(self, event: Event) -> None:
        """Controller listener: state changes as lines, progress as bars.

        Whatever an AIM sent is shown, escaped, never raised on: data that fits no
        payload (``Unrecognized``) is printed as it came when it is a log line.
        """
        if self.quiet:
            return
        match event.payload:
            case ProgressUpdate(step=step, total=total, values=values):
                self._on_progress(event.source, step, total, values)
            case RunStateChanged(state=state, error=error):
                msg = f"run {event.workflow}: {state}" + (f": {error}" if error else "")
                self._progress.console.print(f"[dim]{escape(msg)}[/dim]")
            case AIMStateChanged(state="running" | "done" | "suspended" | "stopping" as state):
                self._progress.console.print(f"[dim]  {escape(event.source)}: {state}[/dim]")
            case LogLine(message=message):
                self._progress.console.print(f"  {escape(event.source)}: {escape(message)}")
            case Unrecognized(topic="log", data=data):
                self._progress.console.print(f"  {escape(event.source)}: {escape(str(data))}")

    def _on_progress(
        self, aim: str, step: float | None, total: float | None, values: dict[str, Any]
    ) -> None:
        fields = " ".join(f"{escape(str(k))}={_fmt(v)}" for k, v in values.items())
        count = f"{step:.0f}/{total:.0f}" if step is not None and total is not None else ""
        task = self._tasks.get(aim)
        if task is None:
            task = self._progress.add_task(fields, total=total, aim=aim, count=count)
            self._tasks[aim] = task
        self._progress.update(task, description=fields, total=total, completed=step, count=count)

    def note(self, text: str) -> None:
        """A one-line message between progress updates."""
        self._progress.console.print(f"[yellow]{text}[/yellow]")

    def summary(self, result: WorkflowResult) -> None:
        """Print the final table: each AIM's reported results, outputs, and the verdict."""
        table = Table(title=f"{result.workflow} ({result.id})", show_lines=False)
        table.add_column("AIM / output")
        table.add_column("result")
        rows: dict[str, dict[str, Any]] = {}
        for aim, data in sorted(result.results.items()):
            flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
            rows.update({k: v for k, v in data.items() if isinstance(v, dict)})
            if flat or not data:
                table.add_row(aim, " ".join(f"{k}={_fmt(v)}" for k, v in flat.items()))
        for ref, records in result.outputs.items():
            table.add_row(ref, f"{len(records)} record(s)")
        if rows:
            self.console.print(_rows_table(rows))
        self.console.print(table)
        for aim, files in result_files(result.results).items():
            for file in files:
                self.console.print(f"{escape(aim)} wrote {escape(file)}", soft_wrap=True)
        colour = "green" if result.ok else "red"
        line = f"[{colour}]{result.state.value}[/{colour}] in {result.seconds:.2f} s"
        if result.error:
            line += f": {result.error}"
        self.console.print(line, soft_wrap=True)
