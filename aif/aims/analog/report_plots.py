"""The reporter's figures: PNGs a reader can open without Python.

Split from :mod:`aif.aims.analog.reporter` so the file writers stay free of matplotlib.
Every figure is drawn with the object-oriented API on its own ``Figure`` attached to
an Agg canvas: no pyplot, no global backend switch, no figure registry, so plotting
from a worker thread cannot disturb anything else in the process. Each function
returns False, writing nothing, when it has nothing to draw (no epochs, no drift, a
single job), so an empty run leaves no empty charts. Inputs are the reporter's
JSON-safe records, where a missing accuracy is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from aif.aims.analog.records import trained_job
from aif.aims.analog.spec import DURATION_UNITS, format_duration

__all__ = [
    "colours_for",
    "duration_ticks",
    "plot_configurations",
    "plot_drift",
    "plot_training",
]

#: Longest job name shown as is in a legend or tick label; longer ones are shortened.
_LABEL_CHARS = 40
#: Most drift times labelled one by one; beyond that the axis uses round durations.
_MAX_TIME_TICKS = 10
_DPI = 120


def _label(text: str) -> str:
    if len(text) <= _LABEL_CHARS:
        return text
    return text[: _LABEL_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _number(value: Any) -> float:
    """A float, with None (a JSON null) as NaN, which matplotlib leaves out of lines."""
    return math.nan if value is None else float(value)


def colours_for(jobs: Iterable[str]) -> dict[str, str]:
    """One colour per job, in first-seen order, so a job looks the same in every figure.

    A deployed job (``hwa-cnn@chip``) takes its trained job's colour, so the chip's
    curve sits beside the simulator's prediction in the same colour.
    """
    colours: dict[str, str] = {}
    trained: dict[str, str] = {}
    for job in jobs:
        base = trained_job(job)
        colour = trained.setdefault(base, f"C{len(trained) % 10}")
        colours.setdefault(job, colour)
    return colours


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI)


def plot_training(
    rows: Iterable[Mapping[str, Any]],
    path: Path,
    colours: Mapping[str, str] | None = None,
    metric: str = "accuracy",
) -> bool:
    """Loss and the test metric per epoch, one line per job, from ``metrics`` records.

    ``metric`` names what the records' ``accuracy`` holds (``mse`` for regression).
    """
    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        point = (int(row["epoch"]), _number(row["loss"]), _number(row["accuracy"]))
        series.setdefault(str(row["job"]), []).append(point)
    if not series:
        return False
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    colours = colours or colours_for(series)
    for job, points in series.items():
        points.sort()
        epochs = [p[0] for p in points]
        style = {"marker": "o", "markersize": 3, "color": colours.get(job)}
        loss_axes.plot(epochs, [p[1] for p in points], **style)
        accuracy_axes.plot(epochs, [p[2] for p in points], label=_label(job), **style)
    loss_axes.set(title="Training loss", xlabel="epoch", ylabel="loss")
    accuracy_axes.set(title=f"Test {metric}", xlabel="epoch", ylabel=metric)
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    accuracy_axes.legend(fontsize="small", loc="best")
    _save(figure, path)
    return True


def duration_ticks(times: Iterable[float]) -> tuple[list[float], list[str]]:
    """Ticks and labels (``1s``, ``1h``, ``1d``, ``1y``) for a log time axis.

    The measured times themselves, or round durations (1s, 1min, 1h, 1d, 1w, 1y) within
    their range when there are too many to label one by one.
    """
    ticks = sorted({float(t) for t in times if t > 0})
    if len(ticks) > _MAX_TIME_TICKS:
        low, high = ticks[0], ticks[-1]
        ticks = [s for s in DURATION_UNITS.values() if low <= s <= high] or [low, high]
    return ticks, [format_duration(t) for t in ticks]


def _time_axis(axes: Axes, times: Iterable[float]) -> None:
    ticks, labels = duration_ticks(times)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_major_formatter(FixedFormatter(labels))
    axes.xaxis.set_minor_locator(NullLocator())


def plot_drift(
    results: Sequence[Mapping[str, Any]],
    path: Path,
    colours: Mapping[str, str] | None = None,
    metric: str = "accuracy",
) -> bool:
    """The test metric against time after programming (log axis), error bars one std.

    One colour per trained job, squares for its deployments (``job@chip``); solid
    without drift compensation, dashed with it. Only
    positive times can sit on a log axis (the spec allows no others).
    """
    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.subplots()
    times_seen: list[float] = []
    drawn = False
    colours = colours or colours_for(str(r.get("job")) for r in results)
    for result in results:
        times = [float(t) for t in result.get("drift_times") or []]
        colour = colours.get(str(result.get("job")))
        for mean_key, std_key, style, suffix in (
            ("drift_mean", "drift_std", "-", ""),
            ("drift_mean_compensated", "drift_std_compensated", "--", " (compensated)"),
        ):
            means = [_number(v) for v in result.get(mean_key) or []]
            stds = [_number(v) for v in result.get(std_key) or []]
            if not means or len(means) != len(times):
                continue
            if len(stds) != len(means):
                stds = [0.0] * len(means)
            keep = [i for i, t in enumerate(times) if t > 0 and not math.isnan(means[i])]
            if not keep:
                continue
            x = [times[i] for i in keep]
            axes.errorbar(
                x,
                [means[i] for i in keep],
                yerr=[0.0 if math.isnan(stds[i]) else stds[i] for i in keep],
                linestyle=style,
                marker="s" if trained_job(str(result.get("job"))) != result.get("job") else "o",
                markersize=4,
                capsize=3,
                color=colour,
                label=_label(str(result.get("job", "?"))) + suffix,
            )
            times_seen.extend(x)
            drawn = True
    if not drawn:
        return False
    _time_axis(axes, times_seen)
    axes.set(
        title=f"Test {metric} after drift",
        xlabel="time after programming",
        ylabel=f"test {metric}",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    _save(figure, path)
    return True


def plot_configurations(
    results: Sequence[Mapping[str, Any]],
    path: Path,
    colours: Mapping[str, str] | None = None,
    metric: str = "accuracy",
) -> bool:
    """Final test metric and training time per job, side by side; needs at least two jobs.

    A job without an accuracy gets an empty bar marked ``n/a``; stopped and failed
    jobs are hatched and their status is written under their name.
    """
    if len(results) < 2:
        return False
    names = []
    for r in results:
        status = str(r.get("status", ""))
        name = _label(str(r.get("job", "?")))
        names.append(name if status == "completed" else f"{name}\n({status})")
    accuracies = [_number(r.get("accuracy")) for r in results]
    seconds = [_number(r.get("train_seconds")) for r in results]
    hatches = ["" if r.get("status") == "completed" else "//" for r in results]
    width = max(8.0, 1.2 * len(results) + 3)
    figure = Figure(figsize=(width, 4.8), layout="constrained")
    accuracy_axes, time_axes = figure.subplots(1, 2)
    positions = list(range(len(results)))
    colours = colours or colours_for(str(r.get("job")) for r in results)
    bar_colours = [colours.get(str(r.get("job")), "C0") for r in results]
    for axes, values, title, unit in (
        (accuracy_axes, accuracies, f"Final test {metric}", metric),
        (time_axes, seconds, "Training time", "seconds"),
    ):
        heights = [0.0 if math.isnan(v) else v for v in values]
        bars = axes.bar(positions, heights, color=bar_colours)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        axes.bar_label(bars, labels=["n/a" if math.isnan(v) else f"{v:.3g}" for v in values])
        axes.set_xticks(positions, names, rotation=30, ha="right", fontsize="small")
        axes.set(title=title, ylabel=unit)
        axes.grid(axis="y", alpha=0.3)
    _save(figure, path)
    return True
