"""One job's synchronous work, kept apart from the AIM so it can run in a worker thread.

``JobRunner.prepare`` loads the data set (cached across the jobs of a sweep), builds
the aihwkit objects, loads a checkpoint if asked, and returns a ``PreparedJob``
whose methods the simulator AIM calls between its looks at signals: one epoch in
slices, evaluate, save a checkpoint, drift inference. ``JobOutcome`` gathers what is
reported about the job, whatever its end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aif.aims.analog.datasets import DatasetCache
from aif.aims.analog.spec import Experiment, format_duration
from aif.aims.base import AIM
from aif.communication.ports import Record
from aif.errors import ExperimentError, KeyNotFound
from aif.storage.base import Storage

#: Where checkpoints live in the simulator's AIM storage.
CHECKPOINT_PREFIX = "checkpoints/"


@dataclass
class JobOutcome:
    """What the simulator reports about one job."""

    job: str
    experiment: str
    label: str
    device: str
    family: str = ""
    status: str = "running"
    error: str = ""
    epochs_done: int = 0
    train_seconds: float = 0.0
    accuracy: float = math.nan
    drift_times: list[float] = field(default_factory=list)
    drift_mean: list[float] = field(default_factory=list)
    drift_std: list[float] = field(default_factory=list)
    drift_mean_compensated: list[float] = field(default_factory=list)
    drift_std_compensated: list[float] = field(default_factory=list)
    checkpoint: str = ""
    #: The simulator AIM that ran the job.
    simulator: str = ""
    #: What ``accuracy`` and the drift means measure: ``accuracy`` or ``mse`` (regression).
    metric: str = "accuracy"
    #: The epoch early stopping ended training at; 0 when it did not.
    stopped_epoch: int = 0
    #: Per analog layer, as aihwkit's analog_summary counts them (see ``layer_summary``).
    layer_names: list[str] = field(default_factory=list)
    layer_tiles: list[int] = field(default_factory=list)
    layer_macs: list[int] = field(default_factory=list)

    def epoch_done(self, accuracy: float, seconds: float) -> None:
        """Count a finished epoch and its test accuracy."""
        self.epochs_done += 1
        self.train_seconds += seconds
        self.accuracy = accuracy

    def record(self) -> dict[str, Any]:
        """The ``results`` record (see ``simulator.RESULT_RECORD``)."""
        return {
            "job": self.job,
            "experiment": self.experiment,
            "label": self.label,
            "family": self.family,
            "device": self.device,
            "status": self.status,
            "error": self.error,
            "epochs_done": self.epochs_done,
            "train_seconds": self.train_seconds,
            "accuracy": self.accuracy,
            "drift_times": self.drift_times,
            "drift_mean": self.drift_mean,
            "drift_std": self.drift_std,
            "drift_mean_compensated": self.drift_mean_compensated,
            "drift_std_compensated": self.drift_std_compensated,
            "checkpoint": self.checkpoint,
            "simulator": self.simulator,
            "metric": self.metric,
            "stopped_epoch": self.stopped_epoch,
            "layer_names": self.layer_names,
            "layer_tiles": self.layer_tiles,
            "layer_macs": self.layer_macs,
        }

    def summary(self) -> dict[str, Any]:
        """A compact view for the run's result table."""
        out: dict[str, Any] = {"status": self.status}
        if math.isfinite(self.accuracy):
            out[self.metric] = round(self.accuracy, 4)
        means = self.drift_mean_compensated or self.drift_mean
        if means:
            out["drift"] = "compensated" if self.drift_mean_compensated else "raw"
        short = "acc" if self.metric == "accuracy" else self.metric
        for seconds, mean in zip(self.drift_times, means, strict=False):
            out[f"{short}@{format_duration(seconds)}"] = round(mean, 4)
        if self.stopped_epoch:
            out["stopped_epoch"] = self.stopped_epoch
        out["seconds"] = round(self.train_seconds, 1)
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class PreparedJob:
    """A job whose data and model are built; each method is one step of its work."""

    experiment: Experiment
    outcome: JobOutcome
    data: Any
    model: Any
    optimizer: Any
    scheduler: Any
    loss_fn: Callable[..., Any]
    device: Any
    #: The configuration has a noise model: drift inference applies.
    drift_capable: bool
    #: The simulator's AIM storage; None in a data-parallel rank, which saves nothing.
    storage: Storage | None
    #: Set while the model trains in half precision (``training.precision``).
    half: Any = None

    def epoch(self, epoch: int, model: Any = None, shard: tuple[int, int] = (0, 1)) -> Any:
        """An ``EpochRunner`` for epoch ``epoch`` (1-based).

        ``model`` trains in place of ``self.model`` (its DistributedDataParallel wrapper,
        say), on this rank's ``shard`` of each batch.
        """
        from aif.aims.analog.augment import augmentation
        from aif.aims.analog.training import EpochRunner

        return EpochRunner(
            self.model if model is None else model,
            self.optimizer,
            self.loss_fn,
            self.data.x_train,
            self.data.y_train,
            batch_size=self.experiment.dataset.batch_size,
            seed=self.experiment.training.seed,
            epoch=epoch,
            device=self.device,
            augment=augmentation(self.experiment.dataset.augment),
            clip_grad_norm=self.experiment.training.clip_grad_norm,
            shard=shard,
        )

    def evaluate(self) -> float:
        """The test metric now: accuracy, or mse for regression."""
        from aif.aims.analog.task_metrics import score_function

        return score_function(self.data.task)(
            self.model,
            self.data.x_test,
            self.data.y_test,
            self.experiment.dataset.batch_size,
            self.device,
        )

    def validate(self) -> float:
        """The metric on the validation split now; NaN without ``validation_fraction``."""
        from aif.aims.analog.task_metrics import score_function

        return score_function(self.data.task)(
            self.model,
            self.data.x_val,
            self.data.y_val,
            self.experiment.dataset.batch_size,
            self.device,
        )

    def validation_loss(self) -> float:
        """The training loss on the validation split now (NaN without one)."""
        from aif.aims.analog.task_metrics import mean_loss

        data, batch = self.data, self.experiment.dataset.batch_size
        return mean_loss(self.model, data.x_val, data.y_val, self.loss_fn, batch, self.device)

    def calibrate(self) -> int:
        """Calibrate the input ranges on training batches (``inference.calibrate``)."""
        from aif.aims.analog.calibration import calibrate

        spec = self.experiment.inference
        assert spec is not None and spec.calibrate is not None
        batch = self.experiment.dataset.batch_size
        seed = self.experiment.training.seed
        return calibrate(self.model, self.data.x_train, spec.calibrate, batch, self.device, seed)

    def full_precision(self) -> None:
        """After training: the model back in float32 for evaluation, checkpoints and drift."""
        if self.half is not None:
            self.half.release()
            self.half = None

    def summarise_layers(self) -> None:
        """Tiles and MACs per analog layer into the outcome."""
        from aif.aims.analog.layer_summary import layer_summary

        layers = layer_summary(self.model, self.data.sample_shape)
        self.outcome.layer_names = [str(layer["name"]) for layer in layers]
        self.outcome.layer_tiles = [int(layer["tiles"]) for layer in layers]
        self.outcome.layer_macs = [int(layer["macs"]) for layer in layers]

    def end_epoch(self) -> float:
        """Step the learning-rate schedule; returns the rate the epoch used."""
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.scheduler is not None:
            self.scheduler.step()
        return lr

    def save_checkpoint(self, name: str) -> None:
        """Keep the weights, and the model they fit, under ``name`` in AIM storage."""
        from aif.aims.analog.checkpoint import save_weights

        assert self.storage is not None, "a data-parallel rank keeps no checkpoints"
        self.storage.put(f"{CHECKPOINT_PREFIX}{name}.pt", save_weights(self.model))
        meta = {
            "experiment": self.experiment.name,
            "model": self.experiment.model.model_dump(mode="json"),
            "dataset": self.experiment.dataset.model_dump(mode="json"),
            "accuracy": self.outcome.accuracy if math.isfinite(self.outcome.accuracy) else None,
        }
        self.storage.put(f"{CHECKPOINT_PREFIX}{name}.json", json.dumps(meta).encode())

    def digital_weights(self) -> tuple[list[str], list[Any]]:
        """Names and float32 CPU arrays of the trained weights, as a digital twin holds them."""
        import torch

        from aif.aims.analog.checkpoint import digital_weights

        weights = digital_weights(self.model)
        return list(weights), [t.to(torch.float32).numpy() for t in weights.values()]

    def drift(self, should_stop: Callable[[], bool]) -> bool:
        """Accuracy after programming and drift; returns True if stopped part way."""
        from aif.aims.analog.inference import drift_inference
        from aif.aims.analog.task_metrics import score_function

        spec = self.experiment.inference
        assert spec is not None
        points = drift_inference(
            self.model,
            self.data.x_test,
            self.data.y_test,
            list(spec.drift_times),
            spec.repetitions,
            spec.compensation,
            spec.seed,
            self.experiment.dataset.batch_size,
            self.device,
            should_stop=should_stop,
            score=score_function(self.data.task),
        )
        if should_stop():
            return True
        out = self.outcome
        out.drift_times = list(spec.drift_times)
        for point in points:
            means = out.drift_mean_compensated if point.compensated else out.drift_mean
            stds = out.drift_std_compensated if point.compensated else out.drift_std
            means.append(point.mean)
            stds.append(point.std)
        return False


class JobRunner:
    """Builds jobs for one simulator, caching data sets across the jobs of a sweep."""

    def __init__(self, storage: Storage | None, base_dir: Path) -> None:
        self._storage = storage
        self._datasets = DatasetCache(base_dir)

    def prepare(
        self, experiment: Experiment, outcome: JobOutcome, weights: bytes | None = None
    ) -> PreparedJob:
        """Data, model, optimizer and schedule for ``experiment``, on ``outcome.device``.

        ``weights`` (a checkpoint's bytes) start the model instead of ``load_checkpoint``:
        how a data-parallel rank, which has no storage, gets them.
        """
        import torch

        from aif.aims.analog import build
        from aif.aims.analog.precision import train_in
        from aif.aims.analog.task_metrics import metric_name, model_outputs
        from aif.aims.analog.training import seed_everything

        data = self._datasets.get(experiment.dataset)
        seed_everything(experiment.training.seed)
        assert experiment.rpu is not None
        rpu_config = build.build_rpu_config(experiment.rpu)
        outcome.family = build.family_of(rpu_config)
        outcome.metric = metric_name(data.task)
        device = torch.device(outcome.device)
        model = build.build_model(
            experiment.model, rpu_config, data.sample_shape, classes=model_outputs(data)
        )
        if weights is None and experiment.load_checkpoint:
            weights = self.checkpoint_bytes(experiment.load_checkpoint)
        if weights is not None:
            from aif.aims.analog.checkpoint import load_weights

            load_weights(model, weights)
        model = model.to(device)
        half = train_in(model, experiment.training.precision)
        optimizer = build.build_optimizer(experiment.training, model)
        return PreparedJob(
            experiment=experiment,
            outcome=outcome,
            data=data,
            model=model,
            optimizer=optimizer,
            scheduler=build.build_scheduler(experiment.training, optimizer),
            loss_fn=build.loss_function(experiment.training),
            device=device,
            drift_capable=build.is_inference_family(rpu_config),
            storage=self._storage,
            half=half,
        )

    def checkpoint_bytes(self, name: str) -> bytes:
        """The weights saved under ``name`` (raises ``ExperimentError`` naming those saved)."""
        assert self._storage is not None, "a data-parallel rank is given its weights"
        try:
            return self._storage.get(f"{CHECKPOINT_PREFIX}{name}.pt")
        except KeyNotFound:
            saved = sorted(
                k.removeprefix(CHECKPOINT_PREFIX).removesuffix(".pt")
                for k in self._storage.keys(CHECKPOINT_PREFIX)
                if k.endswith(".pt")
            )
            raise ExperimentError(
                f"no checkpoint named {name!r} in this simulator's storage; saved: "
                f"{', '.join(saved) or 'none'}. Run the training workflow (with "
                f"'checkpoint: {name}') first, with the same --state-dir and simulator name",
                [("load_checkpoint", f"{name!r} not found")],
            ) from None


async def run_each_job(aim: AIM, run_job: Callable[[dict[str, Any]], Awaitable[JobOutcome]]) -> int:
    """Run each job record as it arrives, one at a time, until the inputs close or the
    AIM is stopped; returns how many ran. The worker loop of the simulator and the chip.
    """
    done = 0
    async for event in aim.events():
        if isinstance(event, Record):
            outcome = await run_job(event.value)
            done += 1
            aim.log.info("%s: %s", outcome.job, outcome.status)
        if aim.stopping:
            break
    return done
