"""Jobs as the web UI shows them, made from what the daemon already records.

A job's row (``summary``) is its ``JobRecord`` plus its latest epoch (kept from the live
events, see ``aif.ui.events``) and its best accuracy (from the reporter's result). The
detail view reads the experiments back from the submitted workflow text, the metrics
and results from the reporter's folder (``metrics.csv``, ``results.json``) or, while the
job runs, from its progress events.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aif.daemon.records import EventRow, JobRecord
from aif.errors import AIFError
from aif.inputs.safe_yaml import load_yaml

#: The AIM type whose parameters hold a workflow's experiments.
SOURCE_TYPE = "experiment-source"
#: Most characters of one log line the UI gets.
LINE_CHARS = 2000


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity made None: JSON has no such numbers, and a
    browser's ``JSON.parse`` refuses Python's ``NaN`` (a diverged loss is one)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """Strict JSON of ``value`` (non-finite numbers as null, anything else odd as text)."""
    options.setdefault("default", str)
    return json.dumps(finite(value), allow_nan=False, **options)


def best_accuracy(record: JobRecord) -> float | None:
    """The best accuracy a job's reporter reported, if any."""
    results = (record.result or {}).get("results")
    if not isinstance(results, dict):
        return None
    for values in results.values():
        if isinstance(values, dict):
            value = values.get("best_accuracy")
            if isinstance(value, int | float) and math.isfinite(value):
                return float(value)
    return None


def report_folder(record: JobRecord) -> Path | None:
    """The reporter's folder of a finished job (None: none reported, or gone)."""
    results = (record.result or {}).get("results")
    if not isinstance(results, dict):
        return None
    for values in results.values():
        if isinstance(values, dict) and isinstance(values.get("folder"), str):
            folder = Path(values["folder"])
            if folder.is_dir():
                return folder
    return None


def summary(record: JobRecord, progress: Mapping[str, Any] | None) -> dict[str, Any]:
    """A job's row in the list."""
    return {
        "id": record.id,
        "name": record.workflow,
        "state": record.state.value,
        "queue": record.queue,
        "instance": record.instance,
        "priority": record.priority,
        "submitted": record.submitted,
        "started": record.started,
        "ended": record.ended,
        "progress": dict(progress) if progress is not None else None,
        "best_accuracy": best_accuracy(record),
        "detail": record.detail,
    }


def matches(record: JobRecord, text: str) -> bool:
    """Whether the job's id, name, state or detail holds ``text`` (any case)."""
    text = text.lower()
    return any(
        text in field.lower()
        for field in (record.id, record.workflow, record.state.value, record.detail)
    )


# -- what a job ran -----------------------------------------------------------------------


def experiments_of(text: str, base_dir: str) -> list[dict[str, Any]]:
    """The experiment mappings of a submitted workflow: inline ones, and those of its
    files when they can still be read (from the workflow's folder)."""
    try:
        data, _ = load_yaml(text, "<job>")
    except AIFError:
        return []
    aims = data.get("aims") if isinstance(data, dict) else None
    if not isinstance(aims, dict):
        return []
    found: list[dict[str, Any]] = []
    for aim in aims.values():
        if not isinstance(aim, dict) or aim.get("type") != SOURCE_TYPE:
            continue
        params = aim.get("params")
        if not isinstance(params, dict):
            continue
        inline = params.get("experiments")
        if isinstance(inline, list):
            found += [e for e in inline if isinstance(e, dict)]
        files = params.get("files")
        if isinstance(files, list):
            from aif.aims.analog.experiments import read_experiment_file

            for name in files:
                if not isinstance(name, str):
                    continue
                try:
                    read = read_experiment_file(Path(base_dir) / name)
                except (AIFError, OSError, ValueError):
                    continue
                found += [e for e in read if isinstance(e, dict)]
    return found


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def metrics_from_csv(path: Path) -> list[dict[str, Any]]:
    """The reporter's ``metrics.csv`` as rows (job, epoch, epochs, loss, ...)."""
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            out: dict[str, Any] = {"job": row.get("job", "")}
            for key in ("epoch", "epochs"):
                number = _number(row.get(key) or "")
                out[key] = int(number) if number is not None else None
            for key in ("loss", "accuracy", "seconds", "lr"):
                out[key] = _number(row.get(key) or "")
            rows.append(out)
    return rows


def metrics_row(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """A progress event's data as a metrics row, if it reports a finished epoch."""
    if not isinstance(data.get("step"), int) or "loss" not in data:
        return None

    def num(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    return {
        "job": str(data.get("job", "")),
        "epoch": data["step"],
        "epochs": data.get("total") if isinstance(data.get("total"), int) else None,
        "loss": num("loss"),
        "accuracy": num("accuracy"),
        "seconds": num("seconds"),
        "lr": num("lr"),
    }


def metrics_from_events(events: Iterable[EventRow]) -> list[dict[str, Any]]:
    """Metrics rows from a job's progress events (while no report exists yet)."""
    rows = [metrics_row(e.data) for e in events if e.topic == "progress"]
    return [row for row in rows if row is not None]


def results_from_report(folder: Path) -> list[dict[str, Any]]:
    """The simulator's result records the reporter wrote (``results.json``'s ``jobs``)."""
    try:
        data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return [j for j in jobs if isinstance(j, dict)] if isinstance(jobs, list) else []


def event_text(event: EventRow) -> str:
    """One line for the log view."""
    data = event.data
    if event.topic == "state":
        state = data.get("job", data.get("run", ""))
        detail = data.get("error") or data.get("detail") or ""
        text = f"{state}: {detail}" if detail else str(state)
    elif event.topic == "log":
        text = str(data.get("message", ""))
    elif event.topic == "progress" and isinstance(data.get("step"), int):
        rest = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in data.items()
            if k not in ("step", "total")
        )
        text = f"epoch {data['step']}/{data.get('total', '?')} {rest}"
    else:
        text = " ".join(f"{k}={v}" for k, v in data.items())
    return text[:LINE_CHARS]


def log_line(event: EventRow) -> dict[str, Any]:
    """An event as a log line of the detail view."""
    return {
        "seq": event.seq,
        "time": event.time,
        "topic": event.topic,
        "source": event.source,
        "text": event_text(event),
    }


# -- comparing jobs -----------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists of mappings by index, other lists whole."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix: value}


def differences(ran: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Fields whose values differ between the jobs' experiments (job id -> experiments):
    one experiment each is compared by its fields, several by ``N.field``."""
    flat = {
        job: flatten(dict(experiments[0]) if len(experiments) == 1 else list(experiments))
        for job, experiments in ran.items()
    }
    fields = sorted({field for values in flat.values() for field in values})
    out = []
    for field in fields:
        values = {job: values.get(field) for job, values in flat.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            out.append({"field": field, "values": values})
    return out


def zip_folder(folder: Path) -> bytes:
    """The files of a report folder as a zip archive (no links followed out of it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, str(path.relative_to(folder)))
    return buffer.getvalue()
