"""One rank of a data-parallel job: what ``python -m aif.aims.analog.ddp`` runs.

The simulator starts one such process per rank (:mod:`aif.aims.analog.ddp.supervisor`)
and hands it the job over ZeroMQ (:mod:`aif.aims.analog.ddp.link`). Each rank builds
the same model from the same seed, wraps it in torch's DistributedDataParallel as
aihwkit's example 20 does (``prepare_for_ddp`` first, so the tiles' analog state is
not broadcast), and trains its share of every global batch
(:class:`aif.aims.analog.training.EpochRunner` with ``shard``). DDP averages the
gradients, so the ranks keep equal weights and train on exactly the batches one rank
would. Test and validation metrics are computed on a share of the data per rank and
summed across the ranks (``all_reduce``); rank 0 reports them, and sends the trained
weights at the end. The simulator then runs calibration, checkpoints and drift
inference once, on those weights.

Signals reach every rank at the same batch: before each batch rank 0 broadcasts what to
do (go on, pause, stop), read from its control socket, so no rank waits in a
collective for a rank that stopped. While paused, every rank waits on its own socket
for the simulator's next word, not in a collective, so a pause can last any time.

A rank whose parent (the simulator) dies is killed by the kernel (``PR_SET_PDEATHSIG``),
so no rank outlives its job.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import zmq

from aif.aims.analog.ddp.link import CONTROL_WORDS, RankPlace, encode, field, read
from aif.errors import AIFError, ExperimentError

if TYPE_CHECKING:
    from aif.aims.analog.runs import JobOutcome
    from aif.storage.base import Storage

log = logging.getLogger("aif.ddp")

#: What rank 0 broadcasts before each batch.
GO, PAUSE, STOP = 0, 1, 2
#: How long a collective may wait for a rank (a pause waits outside collectives).
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent ends (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


class Reports(Protocol):
    """Where a rank's reports go and its control words come from."""

    word: str
    gen: int

    def send(self, kind: str, **fields: Any) -> None: ...
    def drain(self) -> None: ...
    def wait_past(self, gen: int) -> str: ...


class Link:
    """This rank's socket to the simulator: reports out, the job and control words in."""

    def __init__(self, endpoint: str, place: RankPlace) -> None:
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.IDENTITY, f"rank-{place.rank}".encode())
        self._socket.setsockopt(zmq.LINGER, 10_000)
        self._socket.connect(endpoint)
        self.word: str = "resume"
        self.gen = 0

    def send(self, kind: str, **fields: Any) -> None:
        self._socket.send(encode(kind, **fields))

    def receive(self, timeout_ms: int | None) -> dict[str, Any] | None:
        """The next message, or None after ``timeout_ms`` (None: wait for ever)."""
        if timeout_ms is not None and not self._socket.poll(timeout_ms):
            return None
        return read(self._socket.recv(), "simulator")

    def drain(self) -> None:
        """Take every control word waiting (``stop`` sticks: nothing overrides it)."""
        while (message := self.receive(0)) is not None:
            self._control(message)

    def wait_past(self, gen: int) -> str:
        """Block until a ``resume`` or ``stop`` newer than ``gen``; returns which."""
        while True:
            message = self.receive(None)
            assert message is not None
            word, seen = self._control(message)
            if seen > gen and word in ("resume", "stop"):
                return word

    def _control(self, message: dict[str, Any]) -> tuple[str, int]:
        if message["kind"] != "control":
            raise AIFError(f"unexpected {message['kind']!r} message from the simulator")
        word = field(message, "word", str)
        gen = field(message, "gen", int)
        if word not in CONTROL_WORDS:
            raise AIFError(f"unknown control word {word!r} from the simulator")
        if self.word != "stop":
            self.word, self.gen = word, gen
        return word, gen

    def close(self) -> None:
        self._socket.close()
        self._ctx.term()


def prepare_for_ddp(model: Any) -> None:
    """aihwkit's ``prepare_for_ddp`` on any model: a converted torch model's top module
    need not be an analog one, so the method is called unbound. It has DDP skip the
    tiles' analog state when it broadcasts, and refuses tiles DDP cannot train."""
    from aihwkit.exceptions import ModuleError
    from aihwkit.nn.modules.base import AnalogLayerBase

    try:
        AnalogLayerBase.prepare_for_ddp(model)
    except ModuleError as exc:
        raise ExperimentError(
            f"{exc}: data-parallel training needs inference tiles (InferenceRPUConfig, "
            "TorchInferenceRPUConfig, ...)",
            [("training.distributed", "needs an inference RPU configuration")],
        ) from None


def collective_device(job_device: Any, backend: str) -> Any:
    """Where the small control and metric tensors live: nccl reduces GPU tensors only."""
    import torch

    return job_device if backend == "nccl" else torch.device("cpu")


def rank_device(wanted: str, place: RankPlace) -> Any:
    """``cpu``, or this rank's GPU (``LOCAL_RANK`` modulo the GPUs this machine has)."""
    import torch

    if wanted != "cuda":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ExperimentError(f"rank {place.rank}: device cuda, but torch sees no GPU here")
    device = torch.device("cuda", place.local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


class RankTrainer:
    """The training loop of one rank; rank 0 also reports."""

    def __init__(
        self,
        job: dict[str, Any],
        place: RankPlace,
        link: Reports,
        outcome: JobOutcome | None = None,
        storage: Storage | None = None,
    ) -> None:
        """``job`` as the simulator sends it; ``outcome`` and ``storage`` for a rank 0
        that finishes the job itself (one started by torchrun, srun or by hand)."""
        import torch

        from aif.aims.analog.runs import JobOutcome, JobRunner
        from aif.aims.analog.spec import Experiment

        self.place, self.link = place, link
        self.experiment = Experiment.model_validate_json(field(job, "spec", str))
        #: Where a restarted group picks up, and whether rank 0 sends each epoch's weights.
        self.first_epoch = int(job.get("start_epoch") or 1)
        self.keep_weights = bool(job.get("keep_weights"))
        distributed = self.experiment.training.distributed
        assert distributed is not None, "a rank's job asks for distributed training"
        self.backend = distributed.backend
        self.device = rank_device(field(job, "device", str), place)
        self._sync = collective_device(self.device, self.backend)
        weights = job.get("weights")
        if outcome is None:
            outcome = JobOutcome(job="", experiment="", label="", device=str(self.device))
        runner = JobRunner(storage, Path(field(job, "base_dir", str)))
        self.job = runner.prepare(
            self.experiment, outcome, weights if isinstance(weights, bytes) else None
        )
        self.metric = outcome.metric
        prepare_for_ddp(self.job.model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.job.model, device_ids=ids)

    # -- collectives ------------------------------------------------------------------

    def agree(self) -> tuple[int, int]:
        """What every rank does before the next batch, as rank 0 decides: (action, gen)."""
        import torch
        import torch.distributed as dist

        said = torch.zeros(2, dtype=torch.int64)
        if self.place.rank == 0:
            self.link.drain()
            action = {"stop": STOP, "pause": PAUSE}.get(self.link.word, GO)
            said[0], said[1] = action, self.link.gen
        said = said.to(self._sync)
        dist.broadcast(said, 0)
        return int(said[0]), int(said[1])

    def total(self, *values: float) -> list[float]:
        """The sums of ``values`` over all ranks."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self._sync)
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.cpu()]

    def shared_score(self, score: Callable[..., float], x: Any, y: Any) -> float:
        """A per-sample mean metric over ``(x, y)``, each rank scoring every N-th sample."""
        rank, world = self.place.rank, self.place.world
        xs, ys = x[rank::world], y[rank::world]
        batch = self.experiment.dataset.batch_size
        value = score(self.job.model, xs, ys, batch, self.device) if len(ys) else 0.0
        weighted, count = self.total(value * len(ys) if math.isfinite(value) else 0.0, len(ys))
        return weighted / count if count else math.nan

    # -- the loop -----------------------------------------------------------------------

    def train(self) -> str:
        """Every epoch (or until stopped or early-stopped); returns the job's status."""
        from aif.aims.analog.early_stopping import early_stopper
        from aif.aims.analog.task_metrics import score_function

        training = self.experiment.training
        stopper = early_stopper(training.early_stopping, self.metric)
        score = score_function(self.job.data.task)
        data = self.job.data
        shard = (self.place.rank, self.place.world)
        for _ in range(1, self.first_epoch):  # a restarted group: the schedule where it was
            self.job.end_epoch()
        for epoch in range(self.first_epoch, training.epochs + 1):
            runner = self.job.epoch(epoch, model=self.ddp, shard=shard)
            start = time.perf_counter()
            while not runner.done:
                action, gen = self.agree()
                if action == PAUSE:
                    if self.link.wait_past(gen) == "stop":
                        return "stopped"
                    continue
                if action == STOP:
                    return "stopped"
                runner.step(0.0)
            local = runner.loss * runner.samples if runner.samples else 0.0
            loss_sum, samples = self.total(local, runner.samples)
            accuracy = self.shared_score(score, data.x_test, data.y_test)
            validation = self.shared_score(score, data.x_val, data.y_val)
            watched = validation
            if stopper is not None and stopper.spec.metric == "val_loss":
                watched = self.shared_score(self._validation_loss, data.x_val, data.y_val)
            seconds = time.perf_counter() - start
            lr = self.job.end_epoch()
            if self.place.rank == 0:
                self.link.send(
                    "epoch",
                    epoch=epoch,
                    loss=loss_sum / samples if samples else math.nan,
                    accuracy=accuracy,
                    validation=validation,
                    seconds=seconds,
                    lr=lr,
                    samples=int(samples),
                    **({"weights": self._weights()} if self.keep_weights else {}),
                )
            if stopper is not None and stopper.update(epoch, watched):
                if self.place.rank == 0:
                    self.link.send("early_stop", epoch=epoch, best=stopper.best_epoch)
                break
        return "completed"

    def _weights(self) -> bytes:
        """The model's weights now, as a tensors-only checkpoint in float32 (a model that
        trains in half precision restarts in float32, as every model is built)."""
        from aif.aims.analog.checkpoint import save_weights

        return save_weights(self.job.model, float32=True)

    def _validation_loss(self, model: Any, x: Any, y: Any, batch: int, device: Any) -> float:
        from aif.aims.analog.task_metrics import mean_loss

        return mean_loss(model, x, y, self.job.loss_fn, batch, device)

    def report_end(self, status: str) -> None:
        """Rank 0: how training ended, with the weights when it completed."""
        if self.place.rank != 0:
            return
        from aif.aims.analog.checkpoint import save_weights

        self.job.full_precision()
        weights = save_weights(self.job.model) if status == "completed" else b""
        self.link.send("done", status=status, weights=weights)


def join_group(backend: str, place: RankPlace) -> None:
    """Find the other ranks the way torch does (``env://``: MASTER_ADDR, MASTER_PORT)."""
    import torch.distributed as dist

    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=place.rank,
        world_size=place.world,
        timeout=COLLECTIVE_TIMEOUT,
    )


def run_rank(place: RankPlace, endpoint: str) -> int:
    """Hello, the job, training, the end report; returns the exit status."""
    import torch
    import torch.distributed as dist

    link = Link(endpoint, place)
    link.send("hello", rank=place.rank, pid=os.getpid(), host=socket.gethostname())
    try:
        job = link.receive(None)
        assert job is not None
        if job["kind"] != "job":
            raise AIFError(f"expected the job, got {job['kind']!r}")
        threads = job.get("threads")
        if isinstance(threads, int) and threads > 0:
            torch.set_num_threads(threads)
        if job.get("secure"):
            from aif.aims.analog.trusted_code import importable_store_code

            importable_store_code(Path(field(job, "state_dir", str)))
        backend = job.get("backend")
        join_group(backend if isinstance(backend, str) else "gloo", place)
        trainer = RankTrainer(job, place, link)
        status = trainer.train()
        trainer.report_end(status)
        dist.barrier()  # no rank tears the group down while another still reduces
        dist.destroy_process_group()
        return 0
    except Exception as exc:
        what = str(exc) if isinstance(exc, AIFError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, AIFError):
            log.exception("rank %d failed", place.rank)
        link.send("error", rank=place.rank, message=what)
        return 1
    finally:
        link.close()
