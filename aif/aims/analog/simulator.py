"""``analog-simulator``: runs accepted jobs with aihwkit on the CPU or a GPU.

Each job trains (hardware-aware training on inference configs, or in-memory training
on pulsed devices) and then tests after drift, reporting one ``metrics`` record per
epoch and one ``results`` record per job, whatever happened to it: a job that fails
is reported as failed and the simulator takes the next one, so one bad configuration
does not cost a whole sweep. A job whose training loss turns NaN or infinite fails at
once (status ``failed``), its error naming the epoch, the batch, the loss and the fixes.

Training runs in slices of about ``slice_seconds`` of whole batches in a worker
thread; between slices the AIM yields to its runtime, so suspend waits there, resume
goes on, and stop ends the job cleanly with the epochs it finished (status
``stopped``). Heavy work never blocks heartbeats.

A connected ``models`` output gets each trained model (its job's spec and weights as
a digital twin holds them) for deployment, e.g. on an IMC chip, before this
simulator's own drift inference starts, so chip and simulator work side by side.

Training may stop early on a validation metric (``training.early_stopping``); before
drift inference, ``inference.calibrate`` sets the tiles' input ranges from training
batches. Each result lists the tiles and MACs of every analog layer.

Trained weights can be kept in this AIM's storage (``checkpoint: name``) as a
tensors-only file read back with ``torch.load(weights_only=True)``; an inference
workflow with a simulator of the same name picks them up (``load_checkpoint``).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from aif.aims.analog import capabilities
from aif.aims.analog.early_stopping import early_stopper
from aif.aims.analog.records import JOB_RECORD, METRICS_RECORD, MODEL_RECORD, RESULT_RECORD
from aif.aims.analog.runs import JobOutcome, JobRunner, PreparedJob, run_each_job
from aif.aims.analog.spec import Experiment
from aif.aims.base import AIM
from aif.aims.preload import Preload
from aif.errors import ConfigError, ExperimentError, RankFailed

if TYPE_CHECKING:
    from aif.aims.analog.ddp.supervisor import RankGroup

#: Imported in the background at setup: scikit-learn's data sets, torch's first
#: optimizer's ``torch._dynamo`` (about 2 s), and this package's training modules.
_JOB_MODULES = (
    "sklearn.datasets",
    "torch._dynamo",
    "aif.aims.analog.datasets",
    "aif.aims.analog.training",
    "aif.aims.analog.inference",
    "aif.aims.analog.checkpoint",
)


class SimulatorParams(pydantic.BaseModel):
    """Parameters of ``analog-simulator``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    device: Literal["auto", "cpu", "cuda"] = pydantic.Field(
        default="auto",
        description="devices offered: auto = the CPU, and the GPU if torch has one",
    )
    families: list[str] | None = pydantic.Field(
        default=None,
        description="RPU config families this instance accepts (default: every family "
        "its tiles support)",
    )
    threads: int | None = pydantic.Field(
        default=None, ge=1, le=1024, description="torch CPU threads (default: torch's choice)"
    )
    slice_seconds: float = pydantic.Field(
        default=0.25,
        gt=0,
        le=60,
        description="longest stretch of training between two looks at signals",
    )


def available_devices(wanted: str) -> dict[str, list[str]]:
    """Device -> tile kinds this process can drive (raises ``ConfigError`` for a missing GPU)."""
    import torch

    devices: dict[str, list[str]] = {}
    if wanted in ("auto", "cpu"):
        devices["cpu"] = ["torch", "rpucuda"]
    if wanted in ("auto", "cuda") and torch.cuda.is_available():
        kinds = ["torch"]
        try:
            from aihwkit.simulator.rpu_base import cuda

            if cuda.is_compiled():
                kinds.append("rpucuda")
        except ImportError:
            pass
        devices["cuda"] = kinds
    if wanted == "cuda" and "cuda" not in devices:
        raise ConfigError(
            "analog-simulator: device 'cuda' was asked for but torch sees no GPU on this "
            "machine; use device: auto or cpu"
        )
    return devices


@dataclass
class RankProgress:
    """How far a data-parallel job got, carried from one group of ranks to the next."""

    epochs: int
    #: Rank 0 sends each epoch's weights (the job may restart its ranks).
    keep_weights: bool
    next_epoch: int = 1
    #: The weights to start from (a checkpoint, the last finished epoch) or the trained ones.
    weights: bytes | None = None
    status: str = "stopped"

    def epoch_done(self, epoch: int, weights: Any) -> None:
        self.next_epoch = epoch + 1
        if isinstance(weights, bytes):
            self.weights = weights


class AnalogSimulator(AIM):
    """Trains and tests accepted analog jobs with aihwkit, on the CPU or a GPU."""

    inputs = {"jobs": JOB_RECORD}
    outputs = {"metrics": METRICS_RECORD, "results": RESULT_RECORD, "models": MODEL_RECORD}
    Params = SimulatorParams
    queues = ("cpu",)
    #: Opts in to the daemon's warm workers, which import these (torch, aihwkit) once.
    warm_modules = ("aif.aims.analog.build", *_JOB_MODULES, "aif.aims.analog.warm_up:simulator")

    @classmethod
    def resources(cls, params: pydantic.BaseModel | None) -> tuple[str, ...]:
        """``cuda`` asks for a GPU instance; ``auto`` prefers one and takes a CPU one."""
        device = params.device if isinstance(params, SimulatorParams) else "auto"
        return {"cpu": ("cpu",), "cuda": ("cuda",)}.get(device, ("cuda", "cpu"))

    async def setup(self) -> None:
        from aif.aims.analog.build import config_families

        assert isinstance(self.params, SimulatorParams)
        if self.secure:  # the validator let through only models and data from Store packages
            from aif.aims.analog.trusted_code import importable_store_code

            importable_store_code(self.state_dir)
        known = config_families()
        families = self.params.families or known
        unknown = [f for f in families if f not in known]
        if unknown:
            raise ConfigError(
                f"analog-simulator: unknown RPU config families {unknown}; "
                f"aihwkit has: {', '.join(known)}"
            )
        if self.params.threads:
            import torch

            torch.set_num_threads(self.params.threads)
        self._devices = available_devices(self.params.device)
        self._families = families
        self._runner = JobRunner(self.storage, self.base_dir)
        #: The ranks of the data-parallel job running now, which signals must reach.
        self._ranks: RankGroup | None = None
        #: What the first job needs beyond aihwkit, loaded while the workflow starts.
        self._preload = Preload(_JOB_MODULES)

    def capabilities(self) -> dict[str, Any]:
        return capabilities.declare(self._devices, self._families)

    async def run(self) -> None:
        await self.result(jobs=await run_each_job(self, self.run_job))

    async def run_job(self, record: dict[str, Any]) -> JobOutcome:
        """Run one job to its end (completed, stopped or failed) and report it."""
        assert isinstance(self.params, SimulatorParams)
        device = record["device"]
        if device == "auto":
            device = "cuda" if "cuda" in self._devices else "cpu"
        outcome = JobOutcome(
            job=record["job"],
            experiment=record["experiment"],
            label=record["label"],
            device=device,
            simulator=self.name,
        )
        try:
            await self._preload.ready()
            experiment = Experiment.model_validate_json(record["spec"])
            await self._execute(experiment, outcome, record)
        except Exception as exc:  # one failed job must not end the others
            if isinstance(exc, ExperimentError | RankFailed):  # said in full: no traceback
                self.log.error("job %s failed: %s", outcome.job, exc)
            else:
                self.log.exception("job %s failed", outcome.job)
            outcome.status = "failed"
            outcome.error = f"{type(exc).__name__}: {exc}"
        await self.send("results", outcome.record())
        await self.result(**{outcome.job: outcome.summary()})
        return outcome

    async def _execute(
        self, experiment: Experiment, outcome: JobOutcome, record: dict[str, Any]
    ) -> None:
        job = await asyncio.to_thread(self._runner.prepare, experiment, outcome)
        distributed = experiment.training.distributed
        if distributed is not None and distributed.ranks > 1:
            trained = await self._train_on_ranks(experiment, outcome, job)
        else:
            trained = await self._train(experiment, outcome, job)
        if trained:
            await self._finish(experiment, outcome, record, job)

    async def _train(self, experiment: Experiment, outcome: JobOutcome, job: PreparedJob) -> bool:
        """Train here, in slices between looks at signals; False when stopped."""
        assert isinstance(self.params, SimulatorParams)
        epochs = experiment.training.epochs
        stopper = early_stopper(experiment.training.early_stopping, outcome.metric)
        for epoch in range(1, epochs + 1):
            runner = job.epoch(epoch)
            start = time.perf_counter()
            while not runner.done:
                if not await self.checkpoint():
                    outcome.status = "stopped"
                    return False
                await asyncio.to_thread(runner.step, self.params.slice_seconds)
            accuracy = await asyncio.to_thread(job.evaluate)
            validation = await asyncio.to_thread(job.validate)
            seconds = time.perf_counter() - start
            lr = job.end_epoch()
            await self._epoch_done(
                outcome, epoch, epochs, runner.loss, accuracy, validation, seconds, lr
            )
            if stopper is not None:
                watched = validation
                if stopper.spec.metric == "val_loss":
                    watched = await asyncio.to_thread(job.validation_loss)
                if stopper.update(epoch, watched):
                    await self._early_stop(outcome, epoch, stopper.best_epoch)
                    break
        return True

    async def _train_on_ranks(
        self, experiment: Experiment, outcome: JobOutcome, job: PreparedJob
    ) -> bool:
        """Train on ``training.distributed.ranks`` processes; False when stopped.

        The ranks report each epoch's metrics (reduced over the ranks) and, at the end,
        the trained weights, which go into ``job.model`` for what follows here. With
        ``restarts``, rank 0 also sends each epoch's weights, and a group that loses a
        rank is started again from the last finished epoch.
        """
        from aif.aims.analog.checkpoint import load_weights

        assert isinstance(self.params, SimulatorParams)
        distributed = experiment.training.distributed
        assert distributed is not None
        progress = RankProgress(experiment.training.epochs, keep_weights=distributed.restarts > 0)
        if experiment.load_checkpoint:
            progress.weights = self._runner.checkpoint_bytes(experiment.load_checkpoint)
        for attempt in range(distributed.restarts + 1):
            try:
                await self._rank_group(experiment, outcome, progress)
                break
            except RankFailed as exc:
                if attempt == distributed.restarts or self.stopping:
                    raise
                self.log.warning(
                    "%s: %s; starting the ranks again from epoch %d (restart %d of %d)",
                    outcome.job,
                    exc,
                    progress.next_epoch,
                    attempt + 1,
                    distributed.restarts,
                )
                await self.progress(
                    job=outcome.job,
                    ranks_restarted=attempt + 1,
                    from_epoch=progress.next_epoch,
                    cause=str(exc),
                )
        if progress.status != "completed" or progress.weights is None:
            outcome.status = "stopped"
            return False
        await asyncio.to_thread(load_weights, job.model, progress.weights)
        return True

    async def _rank_group(
        self, experiment: Experiment, outcome: JobOutcome, progress: RankProgress
    ) -> None:
        """One group of ranks, from ``progress.next_epoch`` to the end (or a failure)."""
        from aif.aims.analog.ddp.link import field
        from aif.aims.analog.ddp.supervisor import RankGroup, threads_per_rank

        assert isinstance(self.params, SimulatorParams)
        distributed = experiment.training.distributed
        assert distributed is not None
        group = RankGroup(distributed.ranks, distributed.backend, self.log)
        self._ranks = group
        try:
            await self.progress(job=outcome.job, phase=f"starting {distributed.ranks} ranks")
            await group.start(
                {
                    "spec": experiment.model_dump_json(),
                    "device": outcome.device,
                    "base_dir": str(self.base_dir),
                    "secure": self.secure,
                    "state_dir": str(self.state_dir),
                    "weights": progress.weights,
                    "start_epoch": progress.next_epoch,
                    "keep_weights": progress.keep_weights,
                },
                threads_per_rank(distributed.ranks, self.params.threads),
                first_epoch=progress.next_epoch,
            )
            async for report in group.reports(lambda: self.stopping):
                if report["kind"] == "epoch":
                    epoch = field(report, "epoch", int)
                    await self._epoch_done(
                        outcome,
                        epoch,
                        progress.epochs,
                        field(report, "loss", float),
                        field(report, "accuracy", float),
                        field(report, "validation", float),
                        field(report, "seconds", float),
                        field(report, "lr", float),
                    )
                    progress.epoch_done(epoch, report.get("weights"))
                elif report["kind"] == "early_stop":
                    await self._early_stop(
                        outcome, field(report, "epoch", int), field(report, "best", int)
                    )
                    progress.next_epoch = progress.epochs + 1  # a restart trains no more
                elif report["kind"] == "done":
                    progress.status = field(report, "status", str)
                    progress.weights = field(report, "weights", bytes)
        finally:
            self._ranks = None
            await group.close()

    async def on_suspend(self) -> None:
        if self._ranks is not None:
            await self._ranks.control("pause")

    async def on_resume(self) -> None:
        if self._ranks is not None:
            await self._ranks.control("resume")

    async def _epoch_done(
        self,
        outcome: JobOutcome,
        epoch: int,
        epochs: int,
        loss: float,
        accuracy: float,
        validation: float,
        seconds: float,
        lr: float,
    ) -> None:
        """Count a trained epoch: the ``metrics`` record and a progress event."""
        outcome.epoch_done(accuracy, seconds)
        await self.send(
            "metrics",
            {
                "job": outcome.job,
                "epoch": epoch,
                "epochs": epochs,
                "loss": loss,
                "accuracy": accuracy,
                "seconds": seconds,
                "lr": lr,
            },
        )
        await self.progress(
            step=epoch,
            total=epochs,
            job=outcome.job,
            loss=loss,
            accuracy=accuracy,
            **({"val_accuracy": validation} if math.isfinite(validation) else {}),
            seconds=round(seconds, 2),
        )

    async def _early_stop(self, outcome: JobOutcome, epoch: int, best: int) -> None:
        outcome.stopped_epoch = epoch
        await self.progress(job=outcome.job, early_stop=epoch, best=best)

    async def _finish(
        self,
        experiment: Experiment,
        outcome: JobOutcome,
        record: dict[str, Any],
        job: PreparedJob,
    ) -> None:
        """After training: calibration, checkpoint, deployment and drift inference."""
        epochs = experiment.training.epochs
        job.full_precision()
        if epochs == 0:
            outcome.accuracy = await asyncio.to_thread(job.evaluate)
        await asyncio.to_thread(job.summarise_layers)
        inference = experiment.inference
        if inference is not None and inference.calibrate is not None and job.drift_capable:
            await self.progress(job=outcome.job, phase="input-range calibration")
            await asyncio.to_thread(job.calibrate)
        if experiment.checkpoint:
            await asyncio.to_thread(job.save_checkpoint, experiment.checkpoint)
            outcome.checkpoint = experiment.checkpoint
        if self.peers("models"):
            # Deployment targets (an IMC chip) get the trained weights before this
            # simulator's own drift inference, so both predict side by side.
            names, tensors = await asyncio.to_thread(job.digital_weights)
            await self.send(
                "models",
                {
                    "job": outcome.job,
                    "experiment": outcome.experiment,
                    "label": outcome.label,
                    "source": record["source"],
                    "spec": record["spec"],
                    "names": names,
                    "tensors": tensors,
                },
            )
        if experiment.inference is not None and job.drift_capable:
            if not await self.checkpoint():
                outcome.status = "stopped"
                return
            await self.progress(job=outcome.job, phase="drift inference")
            stopped = await asyncio.to_thread(job.drift, lambda: self.stopping)
            if stopped:
                outcome.status = "stopped"
                return
        outcome.status = "completed"
