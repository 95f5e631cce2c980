"""``analog-reporter``: turns a run's records into files a person reads after it ends.

The simulator and validator speak in records; people want a folder. The reporter
listens on three inputs and writes, into one folder per run::

    metrics.csv     job, epoch, epochs, loss, accuracy, seconds, lr: one row per epoch,
                    appended and flushed as each arrives, so a crash loses nothing
    results.json    run info, a summary (best job), every job's result, every rejection;
                    rewritten atomically (temporary file + os.replace) on each result or
                    rejection and once more at the end, so it is never half written
    training.png    loss and accuracy per epoch, one line per job        (if any epoch)
    drift.png       accuracy after drift on a log time axis, std bars    (if any drift)
    configurations.png  accuracy and training time per job               (two jobs or more)

A result's ``metric`` says what its ``accuracy`` and drift means measure (``mse`` for
regression, where lower is better and the best job is the lowest). Seeded jobs
(``training.seeds``) are gathered under ``seeds`` in results.json: mean and std across
seeds of the final metric and of each drift point. Each job's ``layers`` lists its
analog layers' tiles and MACs.

JSON has no NaN: a missing accuracy (a job that never evaluated) is written as
``null``. ``metrics.csv`` writes it as ``nan``, which both ``float()`` and pandas read.
The folder is never reused: when it exists, ``-2``, ``-3``... is appended. The plots
live in :mod:`aif.aims.analog.report_plots`; this module has no matplotlib in it.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from aif.aims.analog.records import METRICS_RECORD, REJECTION_RECORD, RESULT_RECORD
from aif.aims.analog.seeds import seed_statistics
from aif.aims.base import AIM
from aif.aims.preload import Preload
from aif.communication.ports import Record, Stop

__all__ = [
    "METRICS_FIELDS",
    "AnalogReporter",
    "Report",
    "ReporterParams",
    "choose_folder",
    "json_safe",
    "write_json_atomic",
]

#: The figures a report draws, in the order results.json lists them.
PLOTS = ("training.png", "drift.png", "configurations.png")

#: Columns of metrics.csv, in order.
METRICS_FIELDS = ("job", "epoch", "epochs", "loss", "accuracy", "seconds", "lr")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ReporterParams(pydantic.BaseModel):
    """Parameters of ``analog-reporter``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    folder: str | None = pydantic.Field(
        default=None,
        description="where to write; default results/<workflow run>-<YYYYmmdd-HHMMSS> "
        "relative to the working directory; '-2', '-3'... is appended if it exists",
    )
    plots: bool = pydantic.Field(default=True, description="draw the PNG figures at the end")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON: NaN and infinities become None, numpy becomes Python."""
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so readers see the old file or the new one, never a part.

    Refuses NaN (``allow_nan=False``): pass values through :func:`json_safe` first.
    """
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def choose_folder(
    requested: str | None, workflow: str, now: dt.datetime, base: Path | None = None
) -> Path:
    """Create and return a fresh folder for one run's report (absolute).

    ``requested`` (``~`` expanded, relative to ``base`` or the working directory) or
    ``results/<workflow>-<YYYYmmdd-HHMMSS>``; if that exists, ``-2``, ``-3``... is
    appended, so an earlier report is never overwritten.
    """
    base = Path.cwd() if base is None else base
    if requested is None:
        stem = _UNSAFE.sub("_", workflow).strip("._") or "run"
        requested = f"results/{stem}-{now:%Y%m%d-%H%M%S}"
    first = (base / Path(requested).expanduser()).absolute()
    first.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = first, 1
    while True:
        try:
            candidate.mkdir()
        except FileExistsError:
            n += 1
            candidate = first.with_name(f"{first.name}-{n}")
        else:
            return candidate


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _version() -> str | None:
    try:
        return metadata.version("aif")
    except metadata.PackageNotFoundError:
        return None


class Report:
    """What one run produced, and the files in ``folder`` that say it.

    Feed it records with ``add_metrics``, ``add_result`` and ``add_rejection``; each
    updates its file at once. ``finish`` writes the final ``results.json`` and the
    plots and returns the summary.
    """

    def __init__(self, folder: Path, *, workflow: str = "", aim: str = "") -> None:
        self.folder = folder
        self.metrics: list[dict[str, Any]] = []
        #: job name -> its result; a second result for one job replaces the first.
        self.results: dict[str, dict[str, Any]] = {}
        self.rejections: list[dict[str, Any]] = []
        self.plot_errors: list[str] = []
        #: plot file -> what it was drawn from (a revision of its data, and the metric)
        self._drawn: dict[str, tuple[int, str]] = {}
        self._revisions = {"metrics": 0, "results": 0}
        self.run: dict[str, Any] = {
            "workflow": workflow,
            "aim": aim,
            "folder": str(folder),
            "aif_version": _version(),
            "started": _now(),
            "finished": None,
            "complete": False,
            "stop_reason": None,
        }
        with self.metrics_path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(METRICS_FIELDS)

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics.csv"

    @property
    def results_path(self) -> Path:
        return self.folder / "results.json"

    def add_metrics(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """Append one epoch's row to metrics.csv (flushed before returning)."""
        row = {key: json_safe(value[key]) for key in METRICS_FIELDS}
        with self.metrics_path.open("a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(_csv_cell(value[key]) for key in METRICS_FIELDS)
        self.metrics.append(row)
        self._revisions["metrics"] += 1
        return row

    def add_result(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """Record one job's result and rewrite results.json."""
        result: dict[str, Any] = json_safe(dict(value))
        names, tiles, macs = (result.get(f"layer_{k}") or [] for k in ("names", "tiles", "macs"))
        if names:
            result["layers"] = [
                {"name": n, "tiles": t, "macs": m}
                for n, t, m in zip(names, tiles, macs, strict=False)
            ]
        self.results[str(result["job"])] = result
        self._revisions["results"] += 1
        self.write_results()
        return result

    def add_rejection(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """Record one rejected experiment and rewrite results.json."""
        rejection: dict[str, Any] = json_safe(dict(value))
        self.rejections.append(rejection)
        self.write_results()
        return rejection

    def summary(self) -> dict[str, Any]:
        """Counts and the best job: highest accuracy (lowest mse) among completed jobs
        (else stopped ones; never a failed job, whose last accuracy may be a diverged
        model's)."""
        results = list(self.results.values())
        counts = {status: 0 for status in ("completed", "stopped", "failed")}
        for r in results:
            status = str(r.get("status"))
            counts[status] = counts.get(status, 0) + 1
        scored = [r for r in results if isinstance(r.get("accuracy"), int | float)]
        completed = [r for r in scored if r.get("status") == "completed"]
        unfailed = [r for r in scored if r.get("status") != "failed"]
        best = max(completed or unfailed, key=_goodness, default=None)
        with_results = set(self.results)
        unfinished = sorted({str(m["job"]) for m in self.metrics} - with_results)
        return {
            "jobs": len(results),
            **counts,
            "rejected": len(self.rejections),
            "best": None if best is None else best["job"],
            "best_accuracy": None if best is None else best["accuracy"],
            #: What ``best_accuracy`` measures: ``accuracy``, or ``mse`` for regression.
            "best_metric": None if best is None else best.get("metric", "accuracy"),
            "without_result": unfinished,
        }

    def document(self) -> dict[str, Any]:
        """What results.json holds."""
        return {
            "run": self.run,
            "summary": self.summary(),
            "jobs": list(self.results.values()),
            "rejections": self.rejections,
            "seeds": json_safe(seed_statistics(list(self.results.values()))),
            "files": ["metrics.csv", "results.json", *self.plots],
            "plot_errors": self.plot_errors,
        }

    @property
    def plots(self) -> list[str]:
        """The figures drawn so far, in a fixed order."""
        return [name for name in PLOTS if name in self._drawn]

    def write_results(self) -> None:
        write_json_atomic(self.results_path, self.document())

    def finish(self, stop_reason: str | None = None, *, plots: bool = True) -> dict[str, Any]:
        """Draw the plots (unless ``plots`` is False), write the final results.json.

        A plot that fails is reported in ``plot_errors`` instead of losing the results.
        Blocking: call it in a worker thread from async code.
        """
        self.run.update(finished=_now(), complete=True, stop_reason=stop_reason)
        if plots:
            self._plot()
        self.write_results()
        return self.summary()

    def _plot(self) -> None:
        self.draw(PLOTS)

    def draw(self, names: Iterable[str]) -> None:
        """Draw the figures ``names`` whose data changed since they were last drawn.

        Safe in a worker thread while records keep arriving: it draws from copies of
        the records taken when it starts. A figure that fails is reported in
        ``plot_errors`` instead of losing the results. Blocking.
        """
        from aif.aims.analog import report_plots

        # revisions first: a record that lands while copying only causes one more redraw
        revisions = dict(self._revisions)
        metrics, results = list(self.metrics), list(self.results.values())
        jobs = [str(m["job"]) for m in metrics] + [str(r["job"]) for r in results]
        colours = report_plots.colours_for(jobs)
        # what the "accuracy" of records measures: one name, or both when a run mixes them
        metric = " / ".join(sorted({str(r.get("metric", "accuracy")) for r in results}))
        metric = metric or "accuracy"
        sources = {
            "training.png": (report_plots.plot_training, metrics, "metrics"),
            "drift.png": (report_plots.plot_drift, results, "results"),
            "configurations.png": (report_plots.plot_configurations, results, "results"),
        }
        for name in names:
            draw, data, kind = sources[name]
            signature = (revisions[kind], metric)
            if self._drawn.get(name) == signature:
                continue
            try:
                if draw(data, self.folder / name, colours, metric):
                    self._drawn[name] = signature
            except Exception as exc:  # a figure must never cost the results
                self.plot_errors.append(f"{name}: {type(exc).__name__}: {exc}")


def _goodness(result: Mapping[str, Any]) -> float:
    """Larger is better: the accuracy, or minus an error metric (mse)."""
    value = float(result["accuracy"])
    return value if result.get("metric", "accuracy") == "accuracy" else -value


def _csv_cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return repr(value)  # shortest exact form; NaN -> "nan"
    return value


class AnalogReporter(AIM):
    """Writes a run's metrics, results and rejections to a folder, with plots.

    Collects until its inputs close, writing as records arrive (``metrics.csv`` per
    epoch, ``results.json`` per result), then draws ``training.png``, ``drift.png`` and
    ``configurations.png`` and reports the folder and the best job as its result. The
    training curves are drawn as soon as a job's last epoch arrives, while it drifts,
    and only figures whose data changed since are drawn again at the end. The result
    counts the jobs by status (``completed``, ``failed``, ``stopped``, ``rejected``):
    ``aif run`` fails a run in which no job completed and some failed or were rejected.
    """

    #: In a warm worker's forks (the daemon's), matplotlib is imported and its fonts
    #: loaded once, by the warm-up; inproc (``aif run``) it loads while the jobs train.
    warm_modules = ("aif.aims.analog.warm_up:reporter",)

    inputs = {
        "metrics": METRICS_RECORD,
        "results": RESULT_RECORD,
        "rejections": REJECTION_RECORD,
    }
    Params = ReporterParams
    #: A stopped run still reports the jobs its simulators end on the way out.
    drain_on_stop = True
    report: Report

    async def setup(self) -> None:
        assert isinstance(self.params, ReporterParams)
        folder = choose_folder(
            self.params.folder, self.workflow, dt.datetime.now(), base=self.work_dir
        )
        self.report = Report(folder, workflow=self.workflow, aim=self.name)
        self.report.write_results()
        self.log.info("writing the report to %s", folder)
        #: matplotlib loads while the jobs train, not after the last one; and not while
        #: the workflow starts, where it would slow the simulator's own imports.
        self._preload: Preload | None = None
        #: Figures drawn while the run goes on, so the end of the run waits only for
        #: those whose data came last (a single job's drift curve).
        self._drawing: asyncio.Task[None] | None = None

    def _draw_soon(self, names: tuple[str, ...]) -> None:
        """Draw ``names`` in a worker thread unless a drawing is under way (the final
        draw catches up with whatever arrived meanwhile)."""
        if self._drawing is None or self._drawing.done():
            self._drawing = asyncio.create_task(self._draw(names))

    def _plotting(self) -> Preload:
        """matplotlib's import, started on the first call (the first epoch's metrics)."""
        if self._preload is None:
            assert isinstance(self.params, ReporterParams)
            self._preload = Preload(["aif.aims.analog.report_plots"] if self.params.plots else [])
        return self._preload

    async def _draw(self, names: tuple[str, ...]) -> None:
        await self._plotting().ready()
        await asyncio.to_thread(self.report.draw, names)

    async def run(self) -> None:
        assert isinstance(self.params, ReporterParams)
        report = self.report
        reason: str | None = None
        async for event in self.events():
            if isinstance(event, Record):
                if event.port == "metrics":
                    row = report.add_metrics(event.value)
                    self._plotting()
                    if row["epoch"] == row["epochs"] and self.params.plots:
                        # a job's training is over: draw its curves while it drifts
                        self._draw_soon(("training.png",))
                elif event.port == "results":
                    result = report.add_result(event.value)
                    await self.progress(job=result["job"], status=result["status"])
                elif event.port == "rejections":
                    report.add_rejection(event.value)
            elif isinstance(event, Stop):
                reason = event.reason
        if self._drawing is not None:
            await self._drawing
        await self._plotting().ready()
        summary = await asyncio.to_thread(report.finish, reason, plots=self.params.plots)
        await self.result(
            folder=str(report.folder),
            jobs=summary["jobs"],
            completed=summary["completed"],
            failed=summary["failed"],
            stopped=summary["stopped"],
            rejected=summary["rejected"],
            best=summary["best"],
            best_accuracy=summary["best_accuracy"],
            best_metric=summary["best_metric"],
            files=["metrics.csv", "results.json", *report.plots],
        )
