"""A rank with no simulator: started by ``torchrun``, ``srun`` or by hand on each machine.

``python -m aif.aims.analog.ddp EXPERIMENT.yml --out DIR`` on every rank trains
the experiment's one job with its ``training.distributed`` settings, exactly as ranks a
simulator starts do (:class:`aif.aims.analog.ddp.rank.RankTrainer`). The ranks find each
other from the environment torch already reads: ``MASTER_ADDR``, ``MASTER_PORT``,
``RANK``, ``WORLD_SIZE`` (``torchrun`` sets them; under ``srun`` Slurm's
``SLURM_PROCID`` and ``SLURM_NTASKS`` stand in for the last two). ``WORLD_SIZE`` must
equal ``training.distributed.ranks``.

Rank 0 then does what the simulator would: input-range calibration, the checkpoint
(``DIR/checkpoints/NAME.pt``), drift inference, once, after the group is torn down; it
writes ``DIR/results.json`` (the same fields as a simulator's ``results`` record) and
``DIR/metrics.jsonl`` (one line per epoch). SIGTERM or SIGINT on rank 0 stops every
rank at its next batch (status ``stopped``). A rank that dies makes the others fail at
their next collective; each exits non-zero, naming what it saw.
"""

from __future__ import annotations

import json
import logging
import math
import signal
from pathlib import Path
from typing import Any

from aif.aims.analog.ddp.link import RankPlace
from aif.errors import AIFError, ExperimentError

log = logging.getLogger("aif.ddp")


class LocalReports:
    """Rank 0's reports kept in this process; SIGTERM and SIGINT ask for a stop."""

    def __init__(self, outcome: Any, metrics: Path | None) -> None:
        self.word, self.gen = "resume", 0
        self._outcome = outcome
        self._metrics = metrics
        self.status = ""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)

    def _stop(self, signum: int, frame: Any) -> None:
        self.word, self.gen = "stop", self.gen + 1

    def send(self, kind: str, **fields: Any) -> None:
        if kind == "epoch":
            self._outcome.epoch_done(fields["accuracy"], fields["seconds"])
            log.info(
                "epoch %d: loss %.4f, %s %.4f, %.1f s",
                fields["epoch"],
                fields["loss"],
                self._outcome.metric,
                fields["accuracy"],
                fields["seconds"],
            )
            if self._metrics is not None:
                with self._metrics.open("a") as out:
                    out.write(json.dumps({"job": self._outcome.job, **fields}) + "\n")
        elif kind == "early_stop":
            self._outcome.stopped_epoch = fields["epoch"]
        elif kind == "done":
            self.status = fields["status"]

    def drain(self) -> None:
        """Nothing to read: the signal handler sets the word."""

    def wait_past(self, gen: int) -> str:
        return "stop"  # nothing pauses a rank started by hand


def load_job(path: Path, place: RankPlace) -> tuple[Any, str]:
    """The experiment's one job and its label; ``ExperimentError`` saying why not."""
    from aif.aims.analog.experiments import read_experiment_file
    from aif.aims.analog.seeds import job_specs
    from aif.aims.analog.validator import review_experiment

    raws = read_experiment_file(path)
    if len(raws) != 1:
        raise ExperimentError(f"{path} holds {len(raws)} experiments; give a file with one")
    verdict = review_experiment(raws[0], path.parent.absolute())
    if not verdict.accepted or verdict.experiment is None:
        raise ExperimentError(f"{path} cannot run as written", verdict.problems)
    jobs = job_specs(verdict.experiment)
    if len(jobs) != 1:
        raise ExperimentError(
            f"{path} makes {len(jobs)} jobs (a sweep or seeds); ranks started by hand train "
            "one: give one configuration and one seed, or submit it to a daemon",
            [("sweep", "one job per run of the ranks")],
        )
    label, (_, job) = next(iter(jobs.items()))
    distributed = job.training.distributed
    if distributed is None or distributed.ranks != place.world:
        asked = distributed.ranks if distributed is not None else 1
        raise ExperimentError(
            f"{path} asks for {asked} ranks but WORLD_SIZE is {place.world}",
            [("training.distributed.ranks", f"set it to {place.world}, or start {asked} ranks")],
        )
    return job, label


def run_standalone(place: RankPlace, path: Path, out: Path, device: str | None) -> int:
    """Train as one rank; rank 0 finishes the job and writes the results. Exit status."""
    import torch
    import torch.distributed as dist

    from aif.aims.analog.ddp.rank import RankTrainer, join_group
    from aif.aims.analog.runs import JobOutcome
    from aif.aims.analog.spec import job_name
    from aif.storage.local import LocalStorage

    try:
        experiment, label = load_job(path, place)
    except (AIFError, ValueError) as exc:
        log.error("rank %d: %s", place.rank, exc)
        return 2
    where = device or ("cuda" if torch.cuda.is_available() else "cpu")
    outcome = JobOutcome(
        job=job_name(experiment.name, label),
        experiment=experiment.name,
        label=label,
        device=where,
        simulator=f"ranks started by hand ({place.world})",
    )
    lead = place.rank == 0
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    reports = LocalReports(outcome, out / "metrics.jsonl" if lead else None)
    assert experiment.training.distributed is not None
    try:
        join_group(experiment.training.distributed.backend, place)
        trainer = RankTrainer(
            {
                "spec": experiment.model_dump_json(),
                "device": where,
                "base_dir": str(path.parent.absolute()),
            },
            place,
            reports,
            outcome=outcome,
            storage=LocalStorage(out) if lead else None,
        )
        status = trainer.train()
        dist.barrier()
        dist.destroy_process_group()
    except Exception as exc:
        log.error("rank %d failed: %s", place.rank, exc)
        if lead:
            outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
            _write(out, outcome)
        return 1
    if lead:
        finish(trainer, status, outcome, reports)
        _write(out, outcome)
        log.info("rank 0: %s; results in %s", outcome.status, out / "results.json")
    return 0


def finish(trainer: Any, status: str, outcome: Any, reports: LocalReports) -> None:
    """Rank 0 after training: calibration, checkpoint and drift, as the simulator does."""
    experiment, job = trainer.experiment, trainer.job
    if status != "completed":
        outcome.status = "stopped"
        return
    job.full_precision()
    job.summarise_layers()
    inference = experiment.inference
    if inference is not None and inference.calibrate is not None and job.drift_capable:
        job.calibrate()
    if experiment.checkpoint:
        job.save_checkpoint(experiment.checkpoint)
        outcome.checkpoint = experiment.checkpoint
    if inference is not None and job.drift_capable:
        log.info("rank 0: drift inference")
        if job.drift(lambda: reports.word == "stop"):
            outcome.status = "stopped"
            return
    outcome.status = "completed"


def _write(out: Path, outcome: Any) -> None:
    """``results.json``: the record, NaN (not measured) written as null."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    record = {key: plain(value) for key, value in outcome.record().items()}
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
