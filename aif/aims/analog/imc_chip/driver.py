"""``imc_chip``: deploys trained models onto an IMC chip and measures them after drift.

For each MODEL record (a job's spec and its weights as a digital model holds them) the
AIM rebuilds the model, maps its analog layers onto the chip's tiles
(:mod:`~aif.aims.analog.imc_chip.mapping`), and per repetition erases and programs the
tiles anew (a fresh programming-noise draw), lets the chip clock run to each drift time
and measures the test accuracy on the experiment's own test split, digital layers on
the host. One RESULT record per job goes to the reporter, as the simulator's do::

    models ──MODEL──► imc_chip ──RESULT──► reporter
                         │ ChipClient (TCP, protocol.py)
                         ▼
                chip: tcp://HOST:PORT, or "emulate": an emulator child process

With ``chip: emulate`` the AIM starts the emulator as its child
(:mod:`~aif.aims.analog.imc_chip.emulator_child`) in ``setup`` and stops it in
``teardown``, also when ``setup`` itself fails. ``compensation`` measures raw outputs,
globally drift-compensated ones, or both from the same programming draw.

A job that cannot run (a spec or record that does not fit, a model too big for the
chip) is reported as failed and the next one runs; a chip error or a lost connection
fails the AIM, and with it the workflow, with the chip's message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import numpy as np
import pydantic

from aif.aims.analog.datasets import DatasetCache
from aif.aims.analog.imc_chip.client import ChipClient, parse_address
from aif.aims.analog.imc_chip.config import MAX_CLOCK
from aif.aims.analog.imc_chip.emulator_child import EmulatorChild, start_emulator
from aif.aims.analog.imc_chip.messages import InfoReply, Status
from aif.aims.analog.imc_chip.protocol import MAX_PAYLOAD
from aif.aims.analog.records import MODEL_RECORD, RESULT_RECORD
from aif.aims.analog.runs import JobOutcome, run_each_job
from aif.aims.analog.spec import Duration, Experiment, InferenceSpec, format_duration
from aif.aims.base import AIM, AIMRuntime
from aif.aims.preload import Preload
from aif.errors import (
    ChipConnectionError,
    ChipError,
    ConfigError,
    ExperimentError,
    HardwareError,
    ProtocolError,
)

_JOB_MODULES = (
    "sklearn.datasets",
    "torch",
    "aif.aims.analog.datasets",
    "aif.aims.analog.training",
    "aif.aims.analog.imc_chip.mapping",
)


class EmulatorOptions(pydantic.BaseModel):
    """Options of the emulator child (``chip: emulate``); left out: the emulator's default."""

    model_config = pydantic.ConfigDict(extra="forbid")
    tiles: int | None = pydantic.Field(default=None, ge=1, le=65_534)
    rows: int | None = pydantic.Field(default=None, ge=1, le=65_535)
    cols: int | None = pydantic.Field(default=None, ge=1, le=65_535)
    dac_bits: int | None = pydantic.Field(default=None, ge=0, le=24, description="0: exact")
    adc_bits: int | None = pydantic.Field(default=None, ge=0, le=24, description="0: exact")
    out_bound: float | None = pydantic.Field(default=None, gt=0)
    g_max: float | None = pydantic.Field(default=None, gt=0)
    read_noise: float | None = pydantic.Field(default=None, ge=0)
    no_noise: bool = pydantic.Field(default=False, description="an ideal chip (for tests)")
    seed: int | None = pydantic.Field(default=None, ge=0)
    max_batch: int | None = pydantic.Field(default=None, ge=1, description="largest MVM batch")

    def arguments(self) -> list[str]:
        """The command-line flags these options give."""
        args: list[str] = []
        for name, value in self.model_dump(exclude_none=True).items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                args += [flag] if value else []
            else:
                args += [flag, str(value)]
        return args


class ChipParams(pydantic.BaseModel):
    """Parameters of ``imc_chip``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    chip: str = pydantic.Field(
        default="emulate",
        description="emulate: start an emulator child process; or the chip's tcp://HOST:PORT",
    )
    emulator: EmulatorOptions | None = pydantic.Field(
        default=None, description="emulator options (tiles, rows, cols, seed, no_noise, ...)"
    )
    timeout: float = pydantic.Field(
        default=30.0, gt=0, le=3600, description="seconds to wait for each reply of the chip"
    )
    batch: int = pydantic.Field(
        default=1024, ge=1, le=1_000_000, description="most vectors per MVM request"
    )
    drift_times: Annotated[list[Duration], pydantic.Field(min_length=1, max_length=64)] | None = (
        pydantic.Field(
            default=None, description="times after programming (1s, 1h, ...); default: the job's"
        )
    )
    repetitions: int | None = pydantic.Field(
        default=None, ge=1, le=1000, description="programming draws; default: the job's"
    )
    compensation: Literal["with", "without", "both"] | None = pydantic.Field(
        default=None,
        description="global drift compensation per tile (drift_mean_compensated), raw "
        "outputs (drift_mean) or both from the same programming; default: the job's "
        "inference.compensation",
    )

    @pydantic.model_validator(mode="after")
    def _chip_and_emulator(self) -> ChipParams:
        if self.chip != "emulate":
            try:
                parse_address(self.chip)
            except ConfigError as exc:
                raise ValueError(f"chip: {exc}; or 'emulate' for an emulator") from None
            if self.emulator is not None:
                raise ValueError("'emulator' options apply only with chip: emulate; remove them")
        return self


class IMCChip(AIM):
    """Programs trained models onto an IMC chip (or its emulator) and tests them after drift."""

    inputs = {"models": MODEL_RECORD}
    outputs = {"results": RESULT_RECORD}
    Params = ChipParams
    queues = ("imc",)
    technology = "Hardware"

    def __init__(self, runtime: AIMRuntime, params: pydantic.BaseModel | None) -> None:
        super().__init__(runtime, params)
        self.address = ""
        self._emulator: EmulatorChild | None = None
        self._client: ChipClient | None = None

    async def setup(self) -> None:
        assert isinstance(self.params, ChipParams)
        try:
            # what the first job needs, imported while the emulator starts and the
            # workflow is wired, rather than once the first record has arrived
            self._preload = Preload(_JOB_MODULES)
            self._datasets = DatasetCache(self.base_dir)
            if self.params.chip == "emulate":
                options = self.params.emulator or EmulatorOptions()
                self._emulator = await start_emulator(options.arguments(), self.log)
                self.address = self._emulator.address
            else:
                self.address = self.params.chip
            self._client = await ChipClient.connect(self.address, timeout=self.params.timeout)
            self.info: InfoReply = await self._client.info()
        except BaseException:
            await self.teardown()
            raise
        self.log.info("chip at %s: %s", self.address, self.info.name)

    def capabilities(self) -> dict[str, Any]:
        info = self.info
        return {
            "chip": self.address,
            "name": info.name,
            "tiles": info.tiles,
            "rows": info.rows,
            "cols": info.cols,
            "dac_bits": info.dac_bits,
            "adc_bits": info.adc_bits,
            "g_max": info.g_max,
            "out_bound": info.out_bound,
        }

    async def teardown(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._emulator is not None:
            await self._emulator.stop()

    async def run(self) -> None:
        pid = self._emulator.pid if self._emulator is not None else 0
        await self.progress(chip=self.address, name=self.info.name, emulator_pid=pid)
        done = await run_each_job(self, self.run_job)
        await self.result(jobs=done, chip=self.address)

    async def run_job(self, record: dict[str, Any]) -> JobOutcome:
        """Deploy one MODEL record, measure it, report it; chip faults are raised."""
        label = str(record["label"])
        outcome = JobOutcome(
            job=f"{record['job']}@chip",
            experiment=record["experiment"],
            label=f"{label} (chip)".strip(),
            device=self.address,
            family="imc-chip",
            simulator=self.name,
        )
        extra: dict[str, Any] = {}
        try:
            await self._deploy(record, outcome, extra)
        except (HardwareError, ProtocolError) as exc:
            outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
            await self._report(outcome, extra)
            raise await self._explained(exc) from exc
        except Exception as exc:  # this job cannot run; the next one may
            self.log.exception("job %s failed", outcome.job)
            outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
        await self._report(outcome, extra)
        return outcome

    async def _report(self, outcome: JobOutcome, extra: dict[str, Any]) -> None:
        await self.send("results", outcome.record())
        await self.result(**{outcome.job: {**outcome.summary(), **extra}})

    async def _explained(self, exc: Exception) -> Exception:
        """The chip's fault with what this AIM knows about it: the fix, the emulator's end."""
        assert isinstance(self.params, ChipParams)
        if isinstance(exc, ChipError) and exc.status == Status.TOO_LARGE:
            return ChipError(
                f"{exc}; lower this AIM's 'batch' parameter (now {self.params.batch})",
                exc.status,
            )
        emulator = self._emulator
        if (
            isinstance(exc, ChipConnectionError)
            and emulator is not None
            and await emulator.ended(0.5)
        ):
            return ChipConnectionError(f"{exc}; {emulator.exit_text()}")
        return exc

    async def _deploy(
        self, record: dict[str, Any], outcome: JobOutcome, extra: dict[str, Any]
    ) -> None:
        from aif.aims.analog.imc_chip.mapping import ChipModel

        assert isinstance(self.params, ChipParams) and self._client is not None
        experiment = Experiment.model_validate_json(record["spec"])
        await self._preload.ready()
        digital, data, digital_accuracy = await asyncio.to_thread(self._prepare, experiment, record)
        info = self.info
        model = ChipModel(digital, info.rows, info.cols, info.tiles, f"the chip at {self.address}")
        # the jobs table gets the gist; results.json and the log have the whole tile use
        use = model.use
        extra.update(
            tiles=f"{use.tiles_used}/{use.tiles_total}", digital=round(digital_accuracy, 4)
        )
        self.log.info("%s: %s", outcome.job, model.use.text())
        inference = experiment.inference or InferenceSpec()
        times = list(self.params.drift_times or inference.drift_times)
        repetitions = self.params.repetitions or inference.repetitions
        #: Raw and/or compensated, each measured on the same programming draw.
        modes = _MODES[self.params.compensation or inference.compensation]
        batch = min(self.params.batch, (MAX_PAYLOAD - 64) // (4 * max(info.rows, info.cols)))
        chip = self._client
        accuracies: dict[bool, list[list[float]]] = {m: [[] for _ in times] for m in modes}
        order = sorted(range(len(times)), key=lambda k: times[k])  # the clock only goes on
        step, total = 0, repetitions * len(times)
        if self.params.chip == "emulate":
            await _check_clock_budget(chip, repetitions, max(times))
        start = time.perf_counter()
        for rep in range(repetitions):
            if not await self.checkpoint():
                outcome.status = "stopped"
                break
            await chip.reset()
            await model.program(chip)
            programmed = await chip.wait(0.0)
            if True in modes:
                await model.calibrate(chip)
            clock = programmed
            for k in order:
                if programmed + times[k] > clock:
                    clock = await chip.wait(programmed + times[k] - clock)
                measured: dict[str, float] = {}
                for compensated in modes:
                    if compensated:
                        await model.compensate(chip)
                    else:
                        model.uncompensated()
                    accuracy = await model.accuracy(chip, data.x_test, data.y_test, batch, batch)
                    accuracies[compensated][k].append(accuracy)
                    measured["compensated" if compensated else "accuracy"] = round(accuracy, 4)
                step += 1
                await self.progress(
                    job=outcome.job,
                    step=step,
                    total=total,
                    repetition=rep + 1,
                    drift=format_duration(times[k]),
                    **measured,
                )
                if not await self.checkpoint():
                    outcome.status = "stopped"
                    break
            if outcome.status == "stopped":
                break
        extra["seconds"] = round(time.perf_counter() - start, 2)  # on the chip, not training
        _fill(outcome, times, accuracies)
        if outcome.status == "running":
            outcome.status = "completed"

    def _prepare(self, experiment: Experiment, record: dict[str, Any]) -> tuple[Any, Any, float]:
        """The digital model with the record's weights, the data set, the digital accuracy."""
        import torch

        from aif.aims.analog.imc_chip.twin import build_digital_model, load_tensors
        from aif.aims.analog.training import evaluate

        data = self._datasets.get(experiment.dataset)
        digital = build_digital_model(experiment.model, data.sample_shape)
        load_tensors(digital.model, record["names"], record["tensors"])
        digital.model.eval()
        accuracy = evaluate(
            digital.model,
            data.x_test,
            data.y_test,
            experiment.dataset.batch_size,
            torch.device("cpu"),
        )
        return digital, data, accuracy


#: Which outputs ``compensation`` measures: raw (False) and/or compensated (True).
_MODES: dict[str, tuple[bool, ...]] = {
    "without": (False,),
    "with": (True,),
    "both": (False, True),
}


async def _check_clock_budget(chip: ChipClient, repetitions: int, longest: float) -> None:
    """Refuse a job whose drift would run the emulator's clock past ``MAX_CLOCK`` before
    anything is programmed (the chip would refuse the WAIT halfway through it)."""
    needed = repetitions * longest
    left = MAX_CLOCK - await chip.wait(0.0)
    if needed > left:
        raise ExperimentError(
            f"the drift of this job needs {needed:g} s of chip time ({repetitions} "
            f"repetitions x the longest drift time, {format_duration(longest)}), but the "
            f"emulated chip's clock has {left:g} s left (it stops at {MAX_CLOCK:g} s); "
            "use fewer inference.repetitions or shorter drift_times"
        )


def _fill(
    outcome: JobOutcome, times: list[float], accuracies: dict[bool, list[list[float]]]
) -> None:
    """Means and spreads over the repetitions, for each drift time every mode measured."""
    kept = [k for k in range(len(times)) if all(acc[k] for acc in accuracies.values())]
    if not kept:
        return
    outcome.drift_times = [times[k] for k in kept]
    for compensated, acc in accuracies.items():
        means = [float(np.mean(acc[k])) for k in kept]
        stds = [float(np.std(acc[k])) for k in kept]
        if compensated:
            outcome.drift_mean_compensated, outcome.drift_std_compensated = means, stds
        else:
            outcome.drift_mean, outcome.drift_std = means, stds
    # the headline number: right after programming, compensated where measured
    headline = accuracies.get(True) or accuracies[False]
    outcome.accuracy = float(np.mean(headline[kept[0]]))
