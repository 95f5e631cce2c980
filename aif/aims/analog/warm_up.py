"""Warm-ups a warm worker runs once, before it forks: a tiny experiment checked and run
end to end in the worker, so the lazily built state of torch, aihwkit and pydantic
(first-use dispatch tables, validators, tile kernels, the data set's files in the page
cache) is there in every fork, copy-on-write, instead of being built again by each job.

Without them a forked validator spends about 0.2 s on its first check, and a forked
simulator as long on its first model, every job: the cost a long-lived worker paid once.
They run with torch limited to one thread, so no OpenMP team exists in the worker when
it forks (a fork does not carry threads; its child would wait on them forever).
``warm_modules`` entries of the form ``module:function`` name them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

#: A small experiment of the shape most jobs have: digits, an analog MLP on inference
#: tiles with output noise, a few batches of AnalogSGD, test and one drift time.
WARM_UP_EXPERIMENT: dict[str, Any] = {
    "name": "warm-up",
    "dataset": {"name": "digits", "batch_size": 64, "normalize": "unit"},
    "model": {
        "convert": "all",
        "layers": [
            "Flatten",
            {"type": "Linear", "out_features": 16},
            "ReLU",
            {"type": "Linear", "out_features": 10},
        ],
    },
    "rpu": {"config": "InferenceRPUConfig", "forward": {"out_noise": 0.02}},
    "training": {"epochs": 1, "optimizer": {"name": "AnalogSGD", "lr": 0.1}, "seed": 0},
    "inference": {"drift_times": ["1s"], "repetitions": 1, "compensation": "both"},
}


def validator() -> None:
    """Check the warm-up experiment as the analog validator checks a job."""
    from aif.aims.analog.validator import review_experiment

    verdict = review_experiment(dict(WARM_UP_EXPERIMENT), Path.cwd())
    if not verdict.accepted:  # aif's own experiment: a refusal is a bug worth a loud failure
        raise RuntimeError(f"the warm-up experiment was refused: {verdict.problems}")


def simulator() -> None:
    """Run the warm-up experiment as the analog simulator runs a job: data, model and
    optimizer, an epoch, a test and a drift inference."""
    from aif.aims.analog.runs import JobOutcome, JobRunner
    from aif.aims.analog.spec import Experiment
    from aif.storage.local import LocalStorage

    experiment = Experiment.model_validate(WARM_UP_EXPERIMENT)
    with tempfile.TemporaryDirectory(prefix="aif-warm-up-") as folder:
        runner = JobRunner(LocalStorage(Path(folder)), Path(folder))
        outcome = JobOutcome(
            job="warm-up", experiment="warm-up", label="", device="cpu", simulator="warm-up"
        )
        job = runner.prepare(experiment, outcome)
        epoch = job.epoch(1)
        while not epoch.done:
            epoch.step(1.0)
        job.evaluate()
        job.end_epoch()
        job.full_precision()
        job.summarise_layers()
        job.drift(lambda: False)


def reporter() -> None:
    """Import the reporter's plotting and draw one small figure (fonts, text layout, the
    PNG writer), as the first plot of a job would."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import aif.aims.analog.report_plots  # noqa: F401  (what the reporter imports to draw)

    figure = Figure(figsize=(2, 2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([1, 2, 3], [0.5, 0.7, 0.9], label="accuracy")
    axes.set_xscale("log")
    axes.set_title("warm-up")
    axes.legend()
    figure.savefig(io.BytesIO(), format="png")
